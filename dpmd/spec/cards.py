"""FITS keyword records: parse, classify and render 80-character cards.

The specification parser needs this to reject, when a specification is queued,
keywords that could never be written; the merger needs it to read source
headers and to write the product header. Both must agree to the byte, hence one
module, with no astropy: the merger copies records of source files verbatim and
only renders the records it creates itself.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from .names import (
    COMMENTARY_NAMES,
    ESO_PREFIX,
    MAX_ESO_NAME,
    RECORD,
    SPECIAL_NAMES,
    CardError,
    KeywordKind,
    RecordTooLong,
    check_eso_name,
    check_value_name,
    is_reserved,
    is_structure,
)
from .strings import CONTINUE_PREFIX, PRINTABLE, clean_comment, render_string, with_comment

__all__ = [
    "BLANK_RECORD",
    "BLOCK",
    "END_RECORD",
    "MAX_ESO_NAME",
    "RECORD",
    "RECORDS_PER_BLOCK",
    "Card",
    "CardError",
    "KeywordKind",
    "RecordTooLong",
    "cards_from_records",
    "format_value",
    "header_bytes",
    "is_reserved",
    "is_structure",
    "parse_card",
    "render_keyword",
    "string_value",
]

BLOCK = 2880
RECORDS_PER_BLOCK = BLOCK // RECORD
BLANK_RECORD = " " * RECORD
END_RECORD = "END".ljust(RECORD)
_INT64 = (-(2**63), 2**63 - 1)
#: Smallest normal double: CFITSIO cannot convert a subnormal (status 412).
_MIN_NORMAL = sys.float_info.min

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[EDed][+-]?\d+)?"
_VALUE_SYNTAX = re.compile(rf"(?:[TF]|{_NUMBER}|\(\s*{_NUMBER}\s*,\s*{_NUMBER}\s*\))\Z")
_NUMBERS = re.compile(_NUMBER)


@dataclass(frozen=True)
class Card:
    """One keyword: its kind, logical name and the records that carry it.

    `records` holds the 80-character images (more than one for a long string
    continued with CONTINUE records); they are what gets written. `value` is
    the raw value text of the first record (quotes included) and `comment` its
    comment, kept so that a rename can re-render the record.
    """

    kind: KeywordKind
    name: str
    records: tuple[str, ...]
    value: str | None = None
    comment: str | None = None

    @property
    def identity(self) -> tuple[KeywordKind, str]:
        """Two cards with the same identity are the same keyword (priority applies)."""
        return (self.kind, self.name)

    def renamed(self, new_name: str) -> Card:
        """The same keyword under another logical name; the kind cannot change.

        An ESO record that a longer name no longer fits is written again: a
        string continues on CONTINUE records, any other value loses as much of
        its comment as it must. RecordTooLong when even that cannot fit.
        """
        if new_name == self.name:
            return self
        if self.kind is KeywordKind.ESO:
            check_eso_name(new_name)
            records = self._with_prefix(f"{ESO_PREFIX}{new_name} = ")
            return replace(self, name=new_name, records=records)
        if self.name.startswith("HIERARCH "):
            raise CardError(f"cannot rename non-ESO hierarchical keyword {self.name!r}")
        if self.kind is KeywordKind.COMMENTARY:
            if new_name not in COMMENTARY_NAMES:
                raise CardError(
                    f"commentary keyword {self.name!r} can only be renamed to COMMENT, "
                    f"HISTORY or blank, not {new_name!r}"
                )
        else:
            check_value_name(new_name)
        first = new_name.ljust(8) + self.records[0][8:]
        return replace(self, name=new_name, records=(first, *self.records[1:]))

    def _with_prefix(self, prefix: str) -> tuple[str, ...]:
        """The records under a new prefix: the value text kept verbatim when it fits."""
        if len(self.records) > 1:
            return render_string(prefix, *long_string(self), fixed=False)
        value = self.value or ""
        if len(prefix) + len(value) <= RECORD:
            return (with_comment(prefix + value, self.comment),)
        text = string_value(value)
        if text is None:
            raise RecordTooLong(
                f"keyword and value need {len(prefix) + len(value)} characters; "
                f"a record has {RECORD}"
            )
        return render_string(prefix, text, self.comment, fixed=False)


def _split_value(field: str, strict: bool) -> tuple[str, str | None]:
    """Split the text after the value indicator into value text and comment."""
    text = field.lstrip(" ")
    if text.startswith("'"):
        pos = 1
        while True:
            end = text.find("'", pos)
            if end < 0:
                raise CardError("unterminated string value")
            if text[end + 1 : end + 2] == "'":
                pos = end + 2
                continue
            break
        value, rest = text[: end + 1], text[end + 1 :]
    else:
        slash = text.find("/")
        value = (text if slash < 0 else text[:slash]).strip()
        rest = "" if slash < 0 else text[slash:]
        if strict and value and not _VALUE_SYNTAX.match(value):
            raise CardError(f"invalid value {value!r}")
    rest = rest.strip()
    if strict and value and value[0] != "'":
        _check_numbers(value)
    if rest.startswith("/"):
        return value, rest[1:].strip()
    if rest and strict:
        raise CardError(f"unexpected text {rest!r} after the value")
    return value, None


def _check_numbers(value: str) -> None:
    """Refuse numbers in a literal value that CFITSIO would misread."""
    for text in _NUMBERS.findall(value):
        if re.fullmatch(r"[+-]?\d+", text):
            if not _INT64[0] <= int(text) <= _INT64[1]:
                raise CardError(f"integer {_short(text)} does not fit in 64 bits")
        else:
            check_real(float(text.replace("D", "E").replace("d", "e")))


def _short(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} digits)"


def _int_text(value: int) -> str:
    """Decimal digits of any integer; huge ones (str() refuses them) are described."""
    if value.bit_length() > 10_000:
        return f"of about {int(value.bit_length() * math.log10(2))} digits"
    return str(value)


def check_real(value: float) -> None:
    """Refuse reals CFITSIO cannot read back: infinities, NaN and subnormals."""
    if not math.isfinite(value):
        raise CardError(f"{value!r} cannot be written in FITS")
    if value and abs(value) < _MIN_NORMAL:
        raise CardError(
            f"real {value!r} is subnormal (its magnitude is below {_MIN_NORMAL!r}); "
            "CFITSIO cannot read it: write 0 or a normal number"
        )


def string_value(value_text: str | None) -> str | None:
    """The decoded content of a quoted value text, or None if not a string."""
    if not value_text or not value_text.startswith("'"):
        return None
    return value_text[1:-1].replace("''", "'").rstrip()


def parse_card(record: str, strict: bool = False) -> Card:
    """Classify one record. `strict` also checks the value syntax (literal keywords)."""
    if len(record) > RECORD:
        raise CardError(f"record longer than {RECORD} characters")
    if not PRINTABLE.match(record):
        raise CardError("record contains characters outside ASCII 32-126")
    record = record.ljust(RECORD)
    if record.startswith("HIERARCH "):
        equals = record.find("=", 9)
        if equals < 0:
            return Card(KeywordKind.COMMENTARY, "HIERARCH", (record,))
        raw = " ".join(record[9:equals].split())
        name = raw.upper()
        value, comment = _split_value(record[equals + 1 :], strict)
        if name.startswith("ESO "):
            if strict:
                check_eso_name(raw[4:])
            return Card(KeywordKind.ESO, name[4:], (record,), value, comment)
        return Card(KeywordKind.VALUE, f"HIERARCH {name}", (record,), value, comment)
    raw = record[:8].rstrip()
    name = raw.upper()
    if name in SPECIAL_NAMES or record[8:10] != "= ":
        return Card(KeywordKind.COMMENTARY, name, (record,))
    if strict:
        check_value_name(raw)
    value, comment = _split_value(record[10:], strict)
    return Card(KeywordKind.VALUE, name, (record,), value, comment)


def cards_from_records(records: Iterable[str], strict: bool = False) -> list[Card]:
    """Parse header records, attaching CONTINUE records to their long string."""
    cards: list[Card] = []
    pending: list[str] = []
    for record in records:
        if pending and record.startswith(CONTINUE_PREFIX):
            pending.append(record)
            continued = string_value(_split_value(record[10:], False)[0])
            if continued is not None and continued.endswith("&"):
                continue
            cards[-1] = replace(cards[-1], records=tuple(pending))
            pending = []
            continue
        if pending:
            cards[-1] = replace(cards[-1], records=tuple(pending))
            pending = []
        card = parse_card(record, strict)
        text = string_value(card.value)
        if text is not None and text.endswith("&"):
            pending = [card.records[0]]
        cards.append(card)
    if pending:
        cards[-1] = replace(cards[-1], records=tuple(pending))
    return cards


def long_string(card: Card) -> tuple[str, str | None]:
    """The whole value and comment of a string continued over CONTINUE records.

    Every record but the last loses its continuation '&'; the last keeps its
    text as it is (as CFITSIO reads it). Comments of all records are joined.
    """
    texts, comments = [card.value], [card.comment]
    for record in card.records[1:]:
        value, comment = _split_value(record[len(CONTINUE_PREFIX) :], False)
        texts.append(value)
        comments.append(comment)
    parts = [string_value(text) or "" for text in texts]
    value = "".join(part[:-1] if part.endswith("&") else part for part in parts[:-1])
    joined = " ".join(comment for comment in comments if comment)
    return value + parts[-1], joined or None


def format_value(value: str | bool | int | float) -> str:
    """FITS text of a non-string JSON value (64-bit integers, shortest reals)."""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise CardError(f"integer {_short(_int_text(value))} does not fit in 64 bits")
        return str(value)
    if isinstance(value, float):
        check_real(value)
        mantissa, _, exponent = repr(value).partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        if not exponent:
            return mantissa
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}E{sign}{exponent.lstrip('+-').rjust(2, '0')}"
    raise CardError(f"unsupported value type {type(value).__name__}")


def render_keyword(
    kind: KeywordKind, name: str, value: str | bool | int | float, comment: str | None = None
) -> Card:
    """Render a JSON value or ESO keyword; long strings use CONTINUE only when needed."""
    comment = clean_comment(comment)
    if kind is KeywordKind.VALUE:
        check_value_name(name)
        prefix = f"{name:<8}= "
    elif kind is KeywordKind.ESO:
        check_eso_name(name)
        prefix = f"{ESO_PREFIX}{name} = "
    else:
        raise CardError("commentary keywords can only be given as literal keywords")
    if isinstance(value, str):
        records = render_string(prefix, value, comment, kind is KeywordKind.VALUE)
    else:
        text = format_value(value)
        records = (
            with_comment(prefix + (text.rjust(20) if kind is KeywordKind.VALUE else text), comment),
        )
    card = parse_card(records[0])
    return replace(card, records=records)


def header_bytes(records: Sequence[str]) -> bytes:
    """Records plus END, padded with blanks to whole blocks, as bytes."""
    text = "".join(records) + END_RECORD
    padding = -len(text) % BLOCK
    return (text + " " * padding).encode("ascii")
