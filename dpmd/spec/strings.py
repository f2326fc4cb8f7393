"""Character-string values as FITS records, long strings continued with CONTINUE.

Every string the merger writes must read back the same in the two readers a
product meets most: astropy and CFITSIO. They follow the long-string
convention (OGIP 1.0) a little differently, and the writer keeps to what both
read alike:

* astropy takes one trailing ``&`` off *every* record of a continued string;
  CFITSIO takes it off a record only when the next record is a ``CONTINUE``
  with a value or a comment, and keeps the ``&`` of the last record. A string
  that ends with ``&`` is therefore written with that ``&`` inside the last
  text segment, a continuation marker after it, and a final
  ``CONTINUE  '' / comment`` record (CFITSIO ignores an empty ``CONTINUE`` that
  has no comment, hence a comment is always written there).
* Both ignore trailing blanks of a value and blanks before a comment; comments
  are written without them.
* A doubled quote is never split between two records.
"""

from __future__ import annotations

import re

from .names import RECORD, CardError, RecordTooLong

CONTINUE_PREFIX = "CONTINUE  "
#: Escaped characters a CONTINUE record holds before its closing "&'".
_CONTINUE_ROOM = RECORD - len(CONTINUE_PREFIX) - 3
#: Comment of the closing record of a string ending with '&' when it has none.
AMPERSAND_COMMENT = "the value ends with &"
#: Longest string value written (about 1,000 records when continued).
MAX_STRING = 65536
PRINTABLE = re.compile(r"[ -~]*\Z")


def with_comment(head: str, comment: str | None) -> str:
    """Pad a record, adding as much of the comment as fits (truncated, never wrapped)."""
    if len(head) > RECORD:
        raise RecordTooLong(f"keyword and value need {len(head)} characters; a record has {RECORD}")
    if comment:
        room = RECORD - len(head) - 3
        if room > 0:
            head = f"{head} / {comment[:room]}".rstrip()
    return head.ljust(RECORD)


def clean_comment(comment: str | None) -> str | None:
    """The comment as readers will see it: no leading or trailing blanks, None if empty."""
    if comment is None:
        return None
    if not PRINTABLE.match(comment):
        raise CardError("comment contains characters outside ASCII 32-126")
    return comment.strip() or None


def _escaped_len(text: str) -> int:
    return len(text) + text.count("'")


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def _take(text: str, start: int, room: int) -> int:
    """End of the longest segment from `start` whose escaped form fits `room`."""
    used, end = 0, start
    while end < len(text) and used + 1 + (text[end] == "'") <= room:
        used += 1 + (text[end] == "'")
        end += 1
    return end


def render_string(prefix: str, text: str, comment: str | None, fixed: bool) -> tuple[str, ...]:
    """The records of a string keyword: one when it fits, else CONTINUE records.

    `prefix` is everything before the opening quote (`NAME    = ` or
    `HIERARCH ESO NAME = `). Fixed format pads a short value to 20 columns when
    a comment follows, as astropy does, which its CHECKSUM checks rely on.
    Raises RecordTooLong when the prefix leaves no room for any string.
    """
    if len(text) > MAX_STRING:
        raise CardError(f"string value is longer than {MAX_STRING} characters")
    if not PRINTABLE.match(text):
        raise CardError("string value contains characters outside ASCII 32-126")
    comment = clean_comment(comment)
    escaped = _quoted(text)
    single = f"{prefix}'{escaped.ljust(8) if text else _empty(comment)}'"
    if fixed and comment:
        single = single.ljust(len(prefix) + 20)
    if len(single) > RECORD:
        single = f"{prefix}'{escaped}'"  # the 8-character padding is optional
    if len(single) <= RECORD:
        return (with_comment(single, comment),)
    first_room = RECORD - len(prefix) - 3
    if first_room < 0:
        raise RecordTooLong(
            f"keyword name leaves no room for a string value: {len(prefix)} characters "
            f"come before it in a record of {RECORD}"
        )
    closes_with_ampersand = text.endswith("&")
    if closes_with_ampersand:
        last_room = _CONTINUE_ROOM  # the last text segment needs its marker too
    elif comment:
        last_room = _CONTINUE_ROOM + 1 - min(len(comment) + 3, _CONTINUE_ROOM + 1)
    else:
        last_room = _CONTINUE_ROOM + 1
    ends = [_take(text, 0, first_room)]
    while _escaped_len(text[ends[-1] :]) > last_room:
        ends.append(_take(text, ends[-1], _CONTINUE_ROOM))
    if ends[-1] < len(text) or not closes_with_ampersand:
        ends.append(len(text))
    starts = [0, *ends[:-1]]
    segments = [_quoted(text[start:end]) for start, end in zip(starts, ends, strict=True)]
    marked = segments if closes_with_ampersand else segments[:-1]
    records = [f"{prefix}'{marked[0]}&'".ljust(RECORD)]
    records += [f"{CONTINUE_PREFIX}'{segment}&'".ljust(RECORD) for segment in marked[1:]]
    if closes_with_ampersand:
        records.append(with_comment(f"{CONTINUE_PREFIX}' '", comment or AMPERSAND_COMMENT))
    else:
        last = segments[-1] or _empty(comment)
        records.append(with_comment(f"{CONTINUE_PREFIX}'{last}'", comment))
    return tuple(records)


def _empty(comment: str | None) -> str:
    """The text of an empty string: one blank when a comment follows (see above)."""
    return " " if comment else ""
