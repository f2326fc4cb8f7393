"""The wire's decoding is the same with its quick path (msgspec) as with ``json`` alone.

``dpmd.encoding.decode`` asks msgspec first and ``json``'s decoder when msgspec
refuses a line.  For any line — valid JSON of any shape, numbers at their
limits, every escape, and arbitrary bytes — the outcome (the value, its types
and bits, the surrogate flag, or the refusal's message) must be what ``json``
alone gives.  Examples are derandomized so the suite stays deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dpmd import encoding
from dpmd.encoding import ParseError, decode

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 0.0, 2**63, -(2**63) - 1, 2**64, 5e-324, 1.7976931348623157e308]),
)
texts = st.text() | st.sampled_from(["\ud800", "\udfff", "\ud83d\ude00", "\x00", "\u2028", '"\\'])
values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
odd_texts = st.sampled_from([
    b"[1e400]", b"[-1e400]", b"[NaN]", b"[Infinity]", b"[1,]", b"[01]", b"[.5]", b"\xef\xbb\xbf[1]",
    b'["\xed\xa0\x80"]', b'["\\ud800"]', b"[" * 200 + b"]" * 200, b"[" * 1200 + b"]" * 1200,
    b"[" + b"9" * 5000 + b"]", b"{}\x0c", b"{}  \r", b" ", b"", b'{"a":1,"a":2}',
])  # fmt: skip


class _Refuses:
    """A quick decoder that refuses every line: ``decode`` as it was without it."""

    def decode(self, line: bytes) -> Any:
        raise msgspec.DecodeError("refused")


def outcome(decoder: Callable[[bytes], tuple[Any, bool]], line: bytes) -> tuple[str, str]:
    """The value (its repr: types and float bits show) or the refusal, of a line."""
    try:
        value, surrogates = decoder(line)
    except ParseError as error:
        return "refused", str(error)
    return "value", f"{value!r} {surrogates}"


class QuickPathTests(SynchronousTestCase):
    def json_alone(self, line: bytes) -> tuple[str, str]:
        quick, encoding._QUICK = encoding._QUICK, _Refuses()  # type: ignore[assignment]
        try:
            return outcome(decode, line)
        finally:
            encoding._QUICK = quick

    def assertSame(self, line: bytes) -> None:
        self.assertEqual(outcome(decode, line), self.json_alone(line), line[:200])

    @settings(max_examples=400, derandomize=True, deadline=None, database=None)
    @given(values, st.booleans())
    def test_valid_json_decodes_to_the_same_value(self, value: Any, ascii: bool) -> None:
        try:
            line = json.dumps(value, ensure_ascii=ascii).encode("utf-8", "surrogatepass")
        except (ValueError, RecursionError):
            return
        self.assertSame(line)

    @settings(max_examples=400, derandomize=True, deadline=None, database=None)
    @given(st.binary(max_size=60) | odd_texts)
    def test_any_bytes_get_the_same_answer(self, line: bytes) -> None:
        self.assertSame(line)

    def test_the_quick_path_is_taken_for_an_ordinary_request(self) -> None:
        line = b'{"jsonrpc": "2.0", "id": 7, "method": "/daq/GetDaqStatus", "params": ["A.1"]}'
        self.patch(encoding, "_decode_carefully", lambda line: self.fail("json was asked"))
        self.assertEqual(decode(line)[0]["params"], ["A.1"])
