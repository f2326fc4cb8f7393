"""A specification as untrusted JSON: decoded and checked before anything reads it.

A specification comes from the network. Before the schema or the model look at
it, it must be a document every later step can handle: no nesting deeper than
a specification ever needs (validators and encoders recurse), no string that
cannot be encoded as UTF-8 (a lone surrogate would make every later reply,
record and log line that quotes it fail), no number that is not finite. The
walk here is iterative, so no depth of input can exhaust the stack, and every
message it writes is ASCII and short.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: Deepest nesting accepted. A valid specification needs 6 levels
#: ($.sources[0].keywordRules[0].selectionPatterns[0]); the margin is generous.
MAX_DEPTH = 32
#: Messages are cut to this length: a huge value must not make a huge reply.
MAX_MESSAGE = 300
#: At most this many problems are listed for one document.
MAX_PROBLEMS = 20

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")
# What in JSON text could decode to a value ``problems`` refuses: a \u escape (a lone
# surrogate), a raw surrogate (str, or bytes as json.loads decodes them with
# surrogatepass), or a number that may overflow a double (a 3-digit exponent, 309 digits).
# Each is searched for on its own: one pattern of the four alternatives tried all four
# at every character, twice as slow as the four searches.
_RAW_SURROGATE_BYTES = re.compile(rb"\xed[\xa0-\xbf]")
_BIG_EXPONENT = re.compile(r"[0-9][eE][-+]?[0-9]{3}")
_BIG_EXPONENT_BYTES = re.compile(rb"[0-9][eE][-+]?[0-9]{3}")
_MANY_DIGITS = re.compile(r"[0-9]{309}")
_MANY_DIGITS_BYTES = re.compile(rb"[0-9]{309}")


class DocumentError(ValueError):
    """The text is not JSON, or not a document that can be validated; `errors` says why."""

    def __init__(self, errors: Iterable[str]):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


def json_path(parts: Iterable[str | int]) -> str:
    """`$.sources[2].keywordRules[0]`; odd or long keys are quoted (ASCII) and cut."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part) and len(part) <= 64:
            text += f".{part}"
        else:
            shown = json.dumps(part[:64]) + ("..." if len(part) > 64 else "")
            text += f"[{shown}]"
    return text


def shorten(message: str) -> str:
    """A message of at most MAX_MESSAGE characters, safe to encode anywhere."""
    message = _SURROGATE.sub("\ufffd", message)
    if len(message) <= MAX_MESSAGE:
        return message
    return message[: MAX_MESSAGE - 30] + f"... ({len(message)} characters)"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode(text: str | bytes | bytearray) -> Any:
    """Parse JSON text; NaN and infinities are not JSON, nor is unbounded nesting.

    As ``json.loads`` would, with one decoder for every call (``json.loads`` with
    an option builds a new one each time).
    """
    try:
        if not isinstance(text, str):
            text = text.decode(json.detect_encoding(text), "surrogatepass")
        elif text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except RecursionError:
        raise DocumentError(["$: not valid JSON: nested too deeply"]) from None
    except ValueError as exc:
        raise DocumentError([shorten(f"$: not valid JSON: {exc}")]) from None


def text_problems(text: str | bytes | bytearray, document: Any) -> list[str]:
    """``problems(document)`` for a ``document`` decoded from ``text``, mostly without the walk.

    Most specifications hold no escape and no huge number, and are shallow: the
    text says so at C speed, and only the containers are walked for depth.
    """
    if not _suspect(text) and (_few_containers(text) or _shallow(document)):
        return []
    return problems(document)


def _suspect(text: str | bytes | bytearray) -> bool:
    """Whether ``text`` holds anything that could decode to a value ``problems`` refuses."""
    if isinstance(text, str):
        return bool("\\u" in text or _SURROGATE.search(text) or _BIG_EXPONENT.search(text)
                    or _MANY_DIGITS.search(text))  # fmt: skip
    return bool(b"\\u" in text or _RAW_SURROGATE_BYTES.search(text)
                or _BIG_EXPONENT_BYTES.search(text) or _MANY_DIGITS_BYTES.search(text))  # fmt: skip


def _few_containers(text: str | bytes | bytearray) -> bool:
    """Too few brackets in the text (inside strings too) for any nesting to be too deep."""
    if isinstance(text, str):
        return text.count("{") + text.count("[") < MAX_DEPTH
    return text.count(b"{") + text.count(b"[") < MAX_DEPTH


def _shallow(document: Any) -> bool:
    """True when no container lies MAX_DEPTH levels deep (the depth ``problems`` refuses)."""
    stack = [(document, 0)] if isinstance(document, dict | list) else []
    while stack:
        value, depth = stack.pop()
        if depth >= MAX_DEPTH:
            return False
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return True


def problems(document: Any) -> list[str]:
    """Every reason (up to MAX_PROBLEMS) why `document` cannot be validated safely."""
    found: list[str] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack and len(found) < MAX_PROBLEMS:
        value, path = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                found.append(f"{json_path(path)}: {_unencodable(value)}")
        elif isinstance(value, bool | int) or value is None:
            continue
        elif isinstance(value, float):
            if not math.isfinite(value):
                found.append(f"{json_path(path)}: number out of the range of a 64-bit real")
        elif isinstance(value, Mapping | list | tuple):
            if len(path) >= MAX_DEPTH:
                found.append(f"{json_path(path)}: nested deeper than {MAX_DEPTH} levels")
                continue
            if isinstance(value, Mapping):
                items = list(value.items())
                for key, _ in items:
                    if not isinstance(key, str):
                        found.append(f"{json_path(path)}: object key {key!r} is not a string")
                    elif _SURROGATE.search(key):
                        found.append(f"{json_path(path)}: key {_unencodable(key)}")
                stack.extend((item, (*path, key)) for key, item in reversed(items))
            else:
                stack.extend((item, (*path, i)) for i, item in reversed(list(enumerate(value))))
        else:
            found.append(f"{json_path(path)}: {type(value).__name__} is not a JSON value")
    return [shorten(message) for message in found]


def _unencodable(text: str) -> str:
    position = _SURROGATE.search(text)
    assert position is not None
    return (
        f"string cannot be encoded as UTF-8 (lone surrogate U+{ord(position.group()):04X} "
        f"at character {position.start()})"
    )
