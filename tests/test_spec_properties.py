"""Property-based tests of keyword records (dpmd.spec.cards and the header writer).

Random keyword names, kinds and values — strings with quotes, '&', blanks and
any length, edge reals, 64-bit integers, logicals, comments of any length —
are rendered and written as a header; astropy (Header.fromstring and
Card.fromstring) and CFITSIO (fitsio) must read back the same values, and
every record must be 80 printable ASCII characters. Examples are derandomized
so the suite stays deterministic.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import warnings

import fitsio
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dpmd.merge.header import Placed, build_header
from dpmd.spec.cards import (
    RECORD,
    CardError,
    KeywordKind,
    cards_from_records,
    format_value,
    header_bytes,
    long_string,
    render_keyword,
)
from dpmd.spec.names import ESO_PREFIX, SPECIAL_NAMES, is_reserved, is_structure
from dpmd.spec.strings import AMPERSAND_COMMENT

from .fitsfactory import header_file

VALUE, ESO = KeywordKind.VALUE, KeywordKind.ESO
PRINTABLE = "".join(chr(code) for code in range(32, 127))
TINY = sys.float_info.min

value_names = st.from_regex(r"[A-Z0-9_-]{1,8}", fullmatch=True).filter(
    lambda name: name not in SPECIAL_NAMES and not is_structure(name) and not is_reserved(name)
)
eso_names = (
    st.lists(st.from_regex(r"[A-Z0-9_-]{1,16}", fullmatch=True), min_size=1, max_size=6)
    .map(" ".join)
    .filter(lambda name: len(name) <= 63)
)
texts = st.text(
    alphabet=st.sampled_from(PRINTABLE) | st.sampled_from("'& "), max_size=300
) | st.sampled_from(["", "&", "'", "''", " &", "&&", "a" * 100 + "&", "x" * 68, "'" * 70])
reals = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, TINY, -TINY, 5e-324, sys.float_info.max, 1e-300, 1e20, 0.1]
)
values = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.sampled_from([2**63 - 1, -(2**63), 0, -1])
    | reals
    | texts
)
comments = st.none() | st.text(alphabet=st.sampled_from(PRINTABLE), max_size=120)
keywords = st.tuples(
    st.one_of(st.tuples(st.just(VALUE), value_names), st.tuples(st.just(ESO), eso_names)),
    values,
    comments,
)


def fitsio_misreads(kind: KeywordKind, name: str) -> bool:
    """fitsio's header reader takes a name that begins CONTINUE, COMMENT or HISTORY
    (`C`, `HIS`...) for that keyword (it compares only the name's length): a
    reader's limitation, not a product's, so those are checked with astropy alone."""
    return kind is VALUE and any(
        word.startswith(name) for word in ("CONTINUE", "COMMENT", "HISTORY")
    )


def fitsio_fails(card: object) -> bool:
    """fitsio decides whether a HIERARCH value is a string from the *last* '=' of
    the record, so an ESO record with a second '=' (in its value or comment)
    makes its read_header fail: such records are checked with astropy alone."""
    return card.kind is ESO and card.records[0].count("=") > 1  # type: ignore[attr-defined]


def expected(value: object) -> object:
    """What a FITS reader gives back: trailing blanks of a string are not significant."""
    return value.rstrip(" ") if isinstance(value, str) else value


def same(read: object, value: object) -> bool:
    if isinstance(value, bool) or isinstance(read, bool):
        return read is value
    if isinstance(value, float):
        return (
            isinstance(read, float)
            and read == value
            and math.copysign(1, read) == math.copysign(1, value)
        )
    return read == expected(value) and type(read) is type(expected(value))


def why_refused(kind: KeywordKind, name: str, value: object) -> str | None:
    """The documented reasons a keyword cannot be written, or None if it must be."""
    prefix = f"{name:<8}= " if kind is VALUE else f"{ESO_PREFIX}{name} = "
    if isinstance(value, float) and value and abs(value) < TINY:
        return "subnormal"
    if isinstance(value, str):
        single = len(prefix) + 2 + len(value) + value.count("'")
        return "no room for a string" if single > RECORD and len(prefix) + 3 > RECORD else None
    return "value too long" if len(prefix) + len(format_value(value)) > RECORD else None  # type: ignore[arg-type]


class RecordPropertyTests(SynchronousTestCase):
    @settings(max_examples=100, deadline=None, derandomize=True, database=None)
    @given(st.lists(keywords, min_size=1, max_size=8, unique_by=lambda k: k[0]))
    def test_every_reader_gets_the_value(self, items: list) -> None:
        cards, written = [], []
        for (kind, name), value, comment in items:
            try:
                card = render_keyword(kind, name, value, comment)
            except CardError as exc:
                self.assertIsNotNone(why_refused(kind, name, value), f"{name}={value!r}: {exc}")
                continue
            cards.append(card)
            written.append((kind, name, value, comment, card))
        if not cards:
            return
        records = list(build_header([], [], [Placed(card, "s") for card in cards]).records)
        for record in records:
            self.assertEqual(len(record), RECORD)
            self.assertTrue(all(32 <= ord(c) <= 126 for c in record), record)
        parsed = [c.records for c in cards_from_records(records) if c.name != "LONGSTRN"]
        self.assertEqual(parsed[: len(cards)], [c.records for c in cards])
        text = header_bytes(records).decode("ascii")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            header = fits.Header.fromstring(text)
        for_cfitsio = [r for c in cards if not fitsio_fails(c) for r in c.records]
        with tempfile.TemporaryDirectory() as directory:
            cfitsio = fitsio.read_header(
                header_file(os.path.join(directory, "h.fits"), for_cfitsio)
            )
        for kind, name, value, comment, card in written:
            key = name if kind is VALUE else f"ESO {name}"
            astropy_key = key if kind is VALUE else f"HIERARCH {key}"
            self.assertTrue(same(header[astropy_key], value), (card.records, header[astropy_key]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a long HIERARCH card is "fixed" silently
                single = fits.Card.fromstring("".join(card.records))
            self.assertTrue(same(single.value, value), (card.records, single.value))
            checked_by_cfitsio = not (fitsio_misreads(kind, name) or fitsio_fails(card))
            if checked_by_cfitsio:
                self.assertTrue(same(cfitsio[key], value), (card.records, cfitsio[key]))
            if len(card.records) > 1:
                self.assertEqual(long_string(card)[0], expected(value))
            closing = len(card.records) > 1 and card.records[-1].startswith("CONTINUE  ' '")
            wanted = (comment or "").strip() or (AMPERSAND_COMMENT if closing else "")
            read_comment = header.comments[astropy_key]
            self.assertTrue(wanted.startswith(read_comment), (card.records, read_comment))
            if checked_by_cfitsio:
                self.assertEqual(cfitsio.get_comment(key), read_comment, card.records)
