"""FITS keyword records: JSON to FITS conversion, rendering, parsing (dpmd.spec.cards).

Rendered records are read back with astropy, an independent FITS reader.
"""

from __future__ import annotations

import warnings

from astropy.io import fits
from twisted.trial.unittest import SynchronousTestCase

from dpmd.spec.cards import (
    MAX_ESO_NAME,
    CardError,
    KeywordKind,
    RecordTooLong,
    cards_from_records,
    format_value,
    header_bytes,
    is_reserved,
    is_structure,
    parse_card,
    render_keyword,
)

from .fitsfactory import cfitsio_header

VALUE, ESO, COMMENTARY = KeywordKind.VALUE, KeywordKind.ESO, KeywordKind.COMMENTARY


def astropy_card(records: tuple[str, ...]) -> fits.Card:
    """Parse records (with CONTINUE) through an astropy header."""
    header = fits.Header.fromstring(header_bytes(records).decode())
    return header.cards[0]


class ValueConversionTests(SynchronousTestCase):
    def test_logical_and_integer(self) -> None:
        self.assertEqual(format_value(True), "T")
        self.assertEqual(format_value(False), "F")
        self.assertEqual(format_value(0), "0")
        self.assertEqual(format_value(-(2**63)), str(-(2**63)))
        self.assertEqual(format_value(2**63 - 1), str(2**63 - 1))
        for value in (2**63, -(2**63) - 1):
            self.assertRaises(CardError, format_value, value)

    def test_reals_shortest_round_trip(self) -> None:
        cases = {
            1.0: "1.0",
            1.072: "1.072",
            1e20: "1.0E+20",
            1.5e-7: "1.5E-07",
            -0.0: "-0.0",
            123456.789: "123456.789",
            1.7976931348623157e308: "1.7976931348623157E+308",
        }
        for value, text in cases.items():
            self.assertEqual(format_value(value), text)
            card = astropy_card(render_keyword(VALUE, "X", value).records)
            self.assertIsInstance(card.value, float)
            self.assertEqual(card.value, value)

    def test_non_finite_rejected(self) -> None:
        for value in (float("nan"), float("inf")):
            self.assertRaises(CardError, format_value, value)

    def test_types_survive_astropy(self) -> None:
        for value in ("text", True, False, 42, 2**40, -3.25):
            card = astropy_card(render_keyword(VALUE, "KEY", value, "c").records)
            self.assertEqual(card.value, value)
            self.assertIs(type(card.value), type(value))
            self.assertEqual(card.comment, "c")


class RenderTests(SynchronousTestCase):
    def test_value_keyword_fixed_format(self) -> None:
        card = render_keyword(VALUE, "RA", 53.087446, "[deg] 03:32:20.9 RA (J2000) pointing")
        self.assertEqual(
            card.records,
            ("RA      =            53.087446 / [deg] 03:32:20.9 RA (J2000) pointing".ljust(80),),
        )
        self.assertEqual(
            render_keyword(VALUE, "OBJECT", "OBJECT,SKY").records[0].rstrip(),
            "OBJECT  = 'OBJECT,SKY'",
        )
        self.assertEqual(
            render_keyword(VALUE, "A", "ab", "c").records[0].rstrip(),
            "A       = 'ab      '           / c",
        )
        self.assertEqual(render_keyword(VALUE, "E", "").records[0].rstrip(), "E       = ''")

    def test_quotes_doubled(self) -> None:
        card = render_keyword(VALUE, "OBJECT", "it's")
        self.assertEqual(card.records[0].rstrip(), "OBJECT  = 'it''s   '")
        self.assertEqual(astropy_card(card.records).value, "it's")

    def test_eso_keyword(self) -> None:
        card = render_keyword(ESO, "DET CHIP GAIN", 1.5, "gain")
        self.assertEqual(card.records[0].rstrip(), "HIERARCH ESO DET CHIP GAIN = 1.5 / gain")
        self.assertEqual(card.identity, (ESO, "DET CHIP GAIN"))
        parsed = astropy_card(card.records)
        self.assertEqual(
            (parsed.keyword, parsed.value, parsed.comment), ("ESO DET CHIP GAIN", 1.5, "gain")
        )

    def test_eso_name_limit(self) -> None:
        self.assertEqual(MAX_ESO_NAME, 63)
        name = " ".join(["ABCDEFG"] * 8)[:63].rstrip()
        name = name + "X" * (63 - len(name))
        self.assertEqual(len(render_keyword(ESO, name, 1).records[0].rstrip()), 80)
        self.assertRaises(CardError, render_keyword, ESO, name, 12)
        self.assertRaises(CardError, render_keyword, ESO, name + "Y", 1)
        for bad in ("DET  DIT", " DET", "det dit", "DET.DIT", ""):
            self.assertRaises(CardError, render_keyword, ESO, bad, 1)

    def test_value_name_rules(self) -> None:
        for bad in ("TOOLONGNM", "lower", "A B", "", "HISTORY", "CONTINUE", "HIERARCH"):
            self.assertRaises(CardError, render_keyword, VALUE, bad, 1)
        render_keyword(VALUE, "DATE-OBS", "x")

    def test_comment_truncated_not_wrapped(self) -> None:
        card = render_keyword(VALUE, "EXPTIME", 1.5, "x" * 100)
        self.assertEqual(len(card.records), 1)
        self.assertEqual(card.records[0], "EXPTIME =                  1.5 / " + "x" * 47)
        card = render_keyword(ESO, "A" * 60, 1.5, "comment")
        self.assertEqual(card.records[0].rstrip(), "HIERARCH ESO " + "A" * 60 + " = 1.5")

    def test_non_ascii_rejected(self) -> None:
        self.assertRaises(CardError, render_keyword, VALUE, "A", "caf\u00e9")
        self.assertRaises(CardError, render_keyword, VALUE, "A", 1, "caf\u00e9")

    def test_commentary_only_literal(self) -> None:
        self.assertRaises(CardError, render_keyword, COMMENTARY, "COMMENT", "x")


class LongStringTests(SynchronousTestCase):
    def test_single_record_when_it_fits(self) -> None:
        text = "x" * 68  # 'OBJECT  = ' + quotes + 68 characters = 80
        self.assertEqual(len(render_keyword(VALUE, "OBJECT", text).records), 1)
        self.assertEqual(len(render_keyword(VALUE, "OBJECT", text + "y").records), 2)

    def test_continue_round_trip(self) -> None:
        for kind, name in ((VALUE, "LONGSTR"), (ESO, "INS LONG STRING")):
            text = "; ".join(f"segment {n} with 'quotes' and more text" for n in range(8))
            card = render_keyword(kind, name, text, "the comment")
            self.assertGreater(len(card.records), 2)
            self.assertTrue(all(len(r) == 80 for r in card.records))
            self.assertTrue(all(r.startswith("CONTINUE  '") for r in card.records[1:]))
            parsed = astropy_card(card.records)
            self.assertEqual(parsed.value, text)
            self.assertEqual(parsed.comment, "the comment")
            self.assertEqual(cards_from_records(card.records)[0].records, card.records)

    def test_quote_pairs_never_split(self) -> None:
        for length in range(60, 80):
            text = "'" * length
            card = render_keyword(VALUE, "Q", text)
            self.assertEqual(astropy_card(card.records).value, text)

    def test_name_without_room_for_a_string(self) -> None:
        self.assertRaises(CardError, render_keyword, ESO, "A" * 63, "long value")


class ParseTests(SynchronousTestCase):
    def test_classification(self) -> None:
        cases = [
            ("OBJECT  = 'M31' / target", VALUE, "OBJECT", "'M31'", "target"),
            ("HIERARCH ESO  DET   DIT = 1.5", ESO, "DET DIT", "1.5", None),
            ("HIERARCH ESO INS LONGSTR= 'x'", ESO, "INS LONGSTR", "'x'", None),
            ("HIERARCH OTHER KEY = 2", VALUE, "HIERARCH OTHER KEY", "2", None),
            ("COMMENT   free text = 1", COMMENTARY, "COMMENT", None, None),
            ("HISTORY done", COMMENTARY, "HISTORY", None, None),
            ("        blank-name text", COMMENTARY, "", None, None),
            ("ABC     no value indicator", COMMENTARY, "ABC", None, None),
            ("UNDEF   =  / no value", VALUE, "UNDEF", "", "no value"),
        ]
        for record, kind, name, value, comment in cases:
            card = parse_card(record)
            self.assertEqual(
                (card.kind, card.name, card.value, card.comment),
                (kind, name, value, comment),
                record,
            )
            self.assertEqual(card.records, (record.ljust(80),))

    def test_strict_values(self) -> None:
        for good in (
            "A       = 1",
            "A       = -1.5E+03",
            "A       = 1.5D-3",
            "A       = T",
            "A       = (1.0, -2)",
            "A       = 'x''y'",
            "A       =",
        ):
            parse_card(good, strict=True)
        for bad in ("A       = TRUE", "A       = 1.2.3", "A       = 'x' y", "A       = 'x"):
            self.assertRaises(CardError, parse_card, bad, True)
        self.assertRaises(CardError, parse_card, "A" * 81)
        self.assertRaises(CardError, parse_card, "A       = '\u00e9'")

    def test_continue_grouping(self) -> None:
        records = [
            "LONG    = 'abc&'".ljust(80),
            "CONTINUE  'def&'".ljust(80),
            "CONTINUE  'ghi' / c".ljust(80),
            "CONTINUE  'orphan'".ljust(80),
            "NEXT    = 1".ljust(80),
        ]
        cards = cards_from_records(records)
        self.assertEqual([c.name for c in cards], ["LONG", "CONTINUE", "NEXT"])
        self.assertEqual(len(cards[0].records), 3)
        self.assertEqual(cards[1].kind, COMMENTARY)

    def test_structure_and_reserved_names(self) -> None:
        for name in (
            "SIMPLE",
            "BITPIX",
            "NAXIS",
            "NAXIS3",
            "EXTEND",
            "PCOUNT",
            "GCOUNT",
            "GROUPS",
            "TFORM12",
            "TTYPE1",
            "BSCALE",
            "BZERO",
            "EXTNAME",
            "ZNAXIS2",
        ):
            self.assertTrue(is_structure(name), name)
        for name in ("OBJECT", "NAXISX", "DATE-OBS", "TELESCOP"):
            self.assertFalse(is_structure(name), name)
        for name in ("ARCFILE", "ORIGFILE", "DATE", "CHECKSUM", "DATASUM"):
            self.assertTrue(is_reserved(name))
        self.assertFalse(is_reserved("DATE-OBS"))


class RenameTests(SynchronousTestCase):
    def test_value_rename_keeps_value_columns(self) -> None:
        card = parse_card("VALUEKW =                    1 / a comment")
        renamed = card.renamed("NEWKW")
        self.assertEqual(renamed.records[0], "NEWKW   =                    1 / a comment".ljust(80))
        self.assertEqual(renamed.identity, (VALUE, "NEWKW"))
        self.assertRaises(CardError, card.renamed, "MUCHTOOLONG")

    def test_eso_rename_rerenders(self) -> None:
        card = parse_card("HIERARCH ESO INS FILT1 ID = 'R' / filter name")
        renamed = card.renamed("INS2 FILT1 ID")
        self.assertEqual(
            renamed.records[0].rstrip(), "HIERARCH ESO INS2 FILT1 ID = 'R' / filter name"
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            self.assertEqual(astropy_card(renamed.records).keyword, "ESO INS2 FILT1 ID")

    def test_eso_rename_truncates_comment_then_refuses(self) -> None:
        card = parse_card("HIERARCH ESO A = 1234567890 / " + "c" * 40)
        longer = card.renamed("A " + "B" * 40)
        self.assertEqual(len(longer.records[0]), 80)
        self.assertTrue(longer.records[0].rstrip().endswith("c"))
        self.assertRaises(RecordTooLong, card.renamed, "A" * 63)

    def test_rename_that_lengthens_a_full_string_record_continues_it(self) -> None:
        value = "N" * 49  # a full record as astropy writes it, '=' right after the name
        card = parse_card(f"HIERARCH ESO INS FILT1 NAME= '{value}'")
        self.assertEqual(len(card.records[0].rstrip()), 80)
        renamed = card.renamed("INS2 FILT1 NAME")
        self.assertGreater(len(renamed.records), 1)
        self.assertTrue(all(len(r) == 80 for r in renamed.records))
        parsed = astropy_card(renamed.records)
        self.assertEqual((parsed.keyword, parsed.value), ("ESO INS2 FILT1 NAME", value))
        self.assertEqual(
            cfitsio_header(self.mktemp(), renamed.records)["ESO INS2 FILT1 NAME"], value
        )

    def test_rename_of_a_continued_string(self) -> None:
        text = "long " * 40 + "&"
        card = cards_from_records(render_keyword(ESO, "INS A", text, "c").records)[0]
        renamed = card.renamed("INS2 " + "B" * 40)
        parsed = astropy_card(renamed.records)
        self.assertEqual((parsed.value, parsed.comment), (text, "c"))
        header = cfitsio_header(self.mktemp(), renamed.records)
        self.assertEqual(header["ESO INS2 " + "B" * 40], text)

    def test_rename_where_nothing_fits(self) -> None:
        card = parse_card("HIERARCH ESO A = 'x'")
        self.assertRaises(RecordTooLong, card.renamed, "B" * 62)

    def test_commentary_rename(self) -> None:
        card = parse_card("COMMENT hello")
        self.assertEqual(card.renamed("HISTORY").records[0].rstrip(), "HISTORY hello")
        self.assertRaises(CardError, card.renamed, "FOO")


class AmpersandTests(SynchronousTestCase):
    """Continued strings read back the same in astropy and CFITSIO (issue: '&' lost)."""

    def both_readers(self, records: tuple[str, ...], key: str) -> tuple[object, object]:
        header = cfitsio_header(self.mktemp(), records)
        return astropy_card(records).value, header[key]

    def test_long_string_ending_with_ampersand(self) -> None:
        for text, comment in (
            ("a" * 100 + "&", None),
            ("b" * 150 + "&&", "note"),
            ("&" * 90, None),
        ):
            card = render_keyword(VALUE, "AMPLONG", text, comment)
            self.assertTrue(all(len(r) == 80 for r in card.records))
            self.assertEqual(self.both_readers(card.records, "AMPLONG"), (text, text))
            self.assertEqual(cards_from_records(card.records)[0].records, card.records)

    def test_comment_of_the_closing_record(self) -> None:
        card = render_keyword(ESO, "INS AMP", "x" * 100 + "&", "kept")
        self.assertEqual(astropy_card(card.records).comment, "kept")
        self.assertEqual(card.records[-1].rstrip(), "CONTINUE  ' ' / kept")

    def test_short_string_ending_with_ampersand_stays_one_record(self) -> None:
        card = render_keyword(VALUE, "AMP", "abc&")
        self.assertEqual(len(card.records), 1)
        self.assertEqual(self.both_readers(card.records, "AMP"), ("abc&", "abc&"))


class RealTests(SynchronousTestCase):
    """Reals CFITSIO cannot read are refused (subnormals, overflow)."""

    def test_subnormal_refused(self) -> None:
        for value in (5e-324, -1e-310, 2.2250738585072009e-308):
            with self.assertRaises(CardError) as caught:
                render_keyword(VALUE, "TINY", value)
            self.assertIn("subnormal", str(caught.exception))
        smallest = 2.2250738585072014e-308
        card = render_keyword(VALUE, "TINY", smallest)
        self.assertEqual(cfitsio_header(self.mktemp(), card.records)["TINY"], smallest)
        self.assertEqual(format_value(0.0), "0.0")

    def test_literal_numbers_cfitsio_cannot_read(self) -> None:
        for record in (
            "X       = 5.0E-324",
            "X       = 1.0E400",
            "X       = (1.0, 1D-320)",
            "X       = 123456789012345678901234567890",
        ):
            self.assertRaises(CardError, parse_card, record, True)
        parse_card("X       = -9223372036854775808", strict=True)
        parse_card("X       = 1.0D-300", strict=True)
