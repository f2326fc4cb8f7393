"""Compact JSON: one reusable decoder and encoder, and what they cannot carry.

The wire (``dpmd.rpc``) decodes requests and encodes replies with it; the
core encodes with it what it hands out many times (a DAQ's status, a storage
sample, as ``PreEncoded``) and what the vetting child answers.  It knows
neither side: no transport, no DAQ, only JSON text and its limits.

Python's ``json`` accepts more than can be sent back: ``1e400`` decodes to
``inf`` (which ``allow_nan=False`` refuses to encode), ``"\\udcff"`` decodes
to a lone surrogate (which UTF-8 cannot encode), and a line nested a few
hundred levels deep decodes fine but then breaks whatever recurses over it
(or, a few hundred levels deeper, the decoder itself raises
``RecursionError``).  A request holding any of these would get no answer at
all.  So decoding bounds the nesting (a parser's limit, RFC 8259 §9), and
``unrepresentable`` finds the value that could not be sent back, with its
path, so the request is refused naming it before anything is done.

The checks cost next to nothing for ordinary lines: nesting is only walked
when the line holds more brackets than the limit, surrogates are only looked
for when the line holds a ``\\uD8`` to ``\\uDF`` escape.

A line is first decoded by msgspec, in C, five times quicker than ``json``'s
decoder: it takes exactly what that one takes and makes the same values of
it (integers of any length up to ``json``'s digit limit, ``-0``, floats to
the same bits), and refuses more — invalid UTF-8 (as ``json`` after
``bytes.decode``), lone surrogates, ``1e400``, ``NaN``, nesting past a
thousand levels.  A line it refuses goes to ``json``'s decoder, which says
what is wrong with it or takes it as before, so the answer to a line is the
same as without msgspec (``tests/test_encoding.py`` holds them to it).
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

import msgspec

MAX_NESTING = 128
"""Deepest nesting of arrays and objects in one line (a request is 2 or 3 of them)."""

MAX_ECHO = 200
"""Longest piece of a client's text quoted back in an error message."""

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


class ParseError(ValueError):
    """A line that is not one JSON text within the bounds; the text says why."""


def _reject_constant(name: str) -> Any:
    raise ParseError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_QUICK = msgspec.json.Decoder()
_QUICK_REFUSES = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)
_STARTS = frozenset('{["-0123456789tfn')
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False
)


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# JSONEncoder.encode builds a new C encoder on every call; this one is built once.
_MAKE_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE = (
    None
    if _MAKE_C_ENCODER is None
    else _MAKE_C_ENCODER(
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
)


def encode(message: Any) -> bytes:
    """One JSON text on one line, UTF-8, compact; raises if it cannot be represented."""
    if _C_ENCODE is not None and type(message) is dict:
        return "".join(_C_ENCODE(message, 0)).encode("utf-8")
    return _ENCODER.encode(message).encode("utf-8")


class PreEncoded:
    """A result already encoded as one JSON text (UTF-8), sent as it is.

    For answers that are asked for far more often than they change (a DAQ's
    status, the latest storage sample): the server encodes them once and
    every request splices the same bytes into its reply.
    """

    __slots__ = ("json",)

    def __init__(self, json: bytes) -> None:
        self.json = json

    @classmethod
    def of(cls, value: Any) -> PreEncoded:
        return cls(encode(value))


def decode(line: bytes) -> tuple[Any, bool]:
    """The JSON value of a line, and whether it may hold lone surrogates.

    Raises ``ParseError`` for bytes that are not UTF-8, text that is not
    JSON, and values nested deeper than ``MAX_NESTING``.
    """
    try:
        value = _QUICK.decode(line)
    except _QUICK_REFUSES:
        value = _decode_carefully(line)
    if line.count(b"[") + line.count(b"{") > MAX_NESTING and _deeper_than(value, MAX_NESTING):
        raise ParseError(f"nested deeper than {MAX_NESTING} levels")
    return value, _SURROGATE_ESCAPE.search(line) is not None


def _decode_carefully(line: bytes) -> Any:
    """``json``'s decoding of a line msgspec refused: the value, or why there is none."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ParseError(f"not UTF-8 (byte {error.start + 1})") from None
    try:
        if text[:1] in _STARTS:  # the usual case: raw_decode without decode()'s regexes
            value, end = _DECODER.raw_decode(text)
            if end != len(text) and not text[end:].isspace():
                raise json.JSONDecodeError("Extra data", text, end)
        else:
            value = _DECODER.decode(text)
    except json.JSONDecodeError as error:
        raise ParseError(f"not valid JSON: {error.msg} at column {error.colno}") from None
    except RecursionError:
        raise ParseError(f"nested deeper than {MAX_NESTING} levels") from None
    except ParseError:
        raise
    except ValueError:  # the only other one: an integer beyond the conversion limit
        limit = sys.get_int_max_str_digits()
        raise ParseError(f"a number has more than {limit} digits") from None
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is list:
            children: Any = item
        elif type(item) is dict:
            children = item.values()
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate of ``text`` as ``\\udcff``, or None."""
    found = _LONE_SURROGATE.search(text)
    return None if found is None else f"\\u{ord(found.group()):04x}"


def unrepresentable(value: Any, path: str, surrogates: bool = True) -> str | None:
    """Where and why ``value`` cannot be sent as JSON text, or None.

    ``surrogates=False`` skips the search for lone surrogates (a line without
    surrogate escapes cannot hold any).
    """
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        kind = type(item)
        if kind is str:
            if surrogates:
                found = lone_surrogate(item)
                if found:
                    return f"{where} holds a lone surrogate ({found}), which is not Unicode text"
        elif kind is float:
            if not math.isfinite(item):
                return f"{where} is a number too large to represent"
        elif kind is list:
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
        elif kind is dict:
            for key, child in item.items():
                if surrogates and lone_surrogate(key):
                    return f"{where} has a member name holding a lone surrogate"
                stack.append((child, f"{where}.{key}"))
        elif item is not None and kind not in (int, bool):
            return f"{where} is a {kind.__name__}, which JSON cannot represent"
    return None


def quote(text: str) -> str:
    """A client's text fit to be quoted in a message: bounded and always encodable."""
    shown = text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "…"
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")


def scrub(value: Any) -> Any:
    """A copy that can always be encoded: lone surrogates spelled out, odd values as text.

    For error objects and notifications, which must get through even when
    some text in them came from a client and could not be represented.
    """
    kind = type(value)
    if kind is str:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if kind is list or kind is tuple:
        return [scrub(item) for item in value]
    if kind is dict:
        return {scrub(str(key)): scrub(item) for key, item in value.items()}
    if value is None or kind in (int, bool):
        return value
    return scrub(str(value))
