"""Keyword-rule pipeline, priority merge, sorting and header assembly (dpmd.merge)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from dpmd.merge.errors import SpecError
from dpmd.merge.header import (
    Contribution,
    Placed,
    build_header,
    merge_keywords,
    reserved_cards,
    structure_cards,
)
from dpmd.merge.rules import apply_rules
from dpmd.spec import parse_specification
from dpmd.spec.cards import (
    BLANK_RECORD,
    Card,
    KeywordKind,
    cards_from_records,
    header_bytes,
    render_keyword,
)

VALUE, ESO = KeywordKind.VALUE, KeywordKind.ESO


def rules(*raw: dict):
    spec = parse_specification(
        {
            "id": "X",
            "target": {"fileId": "F"},
            "sources": [
                {"type": "fitsFile", "sourceName": "s", "location": "s", "keywordRules": list(raw)}
            ],
        }
    )
    return spec.sources[0].keyword_rules


def header(*records: str) -> list[Card]:
    return cards_from_records([r.ljust(80) for r in records])


def kept(cards: list[Card], pipeline, source: str) -> list[Card]:
    return list(apply_rules(cards, pipeline, source).cards)


def names(cards: list[Card]) -> list[str]:
    return [card.name for card in cards]


def merged_cards(contributions: list[Contribution]) -> list[Card]:
    return [placed.card for placed in merge_keywords(contributions)]


def structure_records(target: list[Card] | None) -> list[str]:
    placed, _ = structure_cards(target, "target")
    return [record for entry in placed for record in entry.card.records]


def reserved_records(archive_name: str, product_name: str, date: str) -> list[str]:
    return [entry.card.records[0] for entry in reserved_cards(archive_name, product_name, date)]


def placed(cards: list[Card]) -> list[Placed]:
    return [Placed(card, "s") for card in cards]


FCS = header(
    "SIMPLE  =                    T",
    "BITPIX  =                    8",
    "NAXIS   =                    0",
    "VALUEKW =                    1",
    "ORIGIN  = 'ESO'",
    "HIERARCH ESO INS FILT1 ID = 'R'",
    "HIERARCH ESO INS TEMP1 VAL = 1.0",
    "HIERARCH ESO INS TEMP3 VAL = 3.0",
    "HIERARCH ESO DET DIT = 2.0",
    "COMMENT hello",
    "DATE    = '2020-01-01'",
    "CHECKSUM= 'abc'",
    "",
    "",
)


class PipelineTests(SynchronousTestCase):
    def test_absent_rules_copy_user_keywords(self) -> None:
        self.assertEqual(
            names(kept(FCS, None, "fcs")),
            [
                "VALUEKW",
                "ORIGIN",
                "INS FILT1 ID",
                "INS TEMP1 VAL",
                "INS TEMP3 VAL",
                "DET DIT",
                "COMMENT",
            ],
        )

    def test_empty_rules_copy_nothing(self) -> None:
        self.assertEqual(kept(FCS, (), "fcs"), [])

    def test_reference_worked_example(self) -> None:
        pipeline = rules(
            {
                "type": "filter",
                "selectionPatterns": ["+e INS *", "-e INS TEMP[12] *", "+v VALUEKW"],
            },
            {
                "type": "transform",
                "selectionPatterns": ["+e INS *"],
                "regex": "^INS ",
                "format": "INS2 ",
            },
        )
        result = kept(FCS, pipeline, "fcs")
        self.assertEqual(names(result), ["VALUEKW", "INS2 FILT1 ID", "INS2 TEMP3 VAL"])
        self.assertEqual(result[1].records[0].rstrip(), "HIERARCH ESO INS2 FILT1 ID = 'R'")

    def test_filter_never_sees_structure_or_reserved(self) -> None:
        result = kept(FCS, rules({"type": "filter", "selectionPatterns": ["+v *"]}), "s")
        self.assertEqual(names(result), ["VALUEKW", "ORIGIN"])

    def test_commentary_kind(self) -> None:
        result = kept(FCS, rules({"type": "filter", "selectionPatterns": ["+c *"]}), "s")
        self.assertEqual(names(result), ["COMMENT"])

    def test_transform_leaves_unselected_alone(self) -> None:
        pipeline = rules(
            {
                "type": "transform",
                "selectionPatterns": ["+e INS TEMP1 *"],
                "regex": "TEMP",
                "format": "TMP",
            }
        )
        self.assertEqual(
            names(kept(FCS, pipeline, "s"))[2:5],
            ["INS FILT1 ID", "INS TMP1 VAL", "INS TEMP3 VAL"],
        )

    def test_value_rename(self) -> None:
        pipeline = rules(
            {
                "type": "transform",
                "selectionPatterns": ["+v VALUEKW"],
                "regex": "KW$",
                "format": "2",
            }
        )
        result = kept(FCS, pipeline, "s")
        self.assertEqual(result[0].records[0].rstrip(), "VALUE2  =                    1")

    def test_invalid_renames_are_errors(self) -> None:
        cases = [
            ("+v VALUEKW", "^", "LONGER"),  # 13 characters
            ("+v ORIGIN", "^ORIGIN$", "NAXIS"),  # a structure keyword
            ("+v ORIGIN", "^ORIGIN$", "DATE"),  # a reserved keyword
            ("+e INS *", "^INS ", "ins "),  # lower case
            ("+e DET DIT", "^.*$", ""),  # empty name
        ]
        for pattern, regex, fmt in cases:
            pipeline = rules(
                {"type": "transform", "selectionPatterns": [pattern], "regex": regex, "format": fmt}
            )
            with self.assertRaises(SpecError, msg=(pattern, fmt)) as caught:
                kept(FCS, pipeline, "fcs")
            self.assertIn("source 'fcs', keywordRules[0]", str(caught.exception))


def outcome(cards: list[Card], pipeline, data_dropped: bool = False):
    """What each rule did: (name, renamed_by) kept, (name, reason, rule) dropped."""
    selection = apply_rules(cards, pipeline, "s", data_dropped=data_dropped)
    return (
        list(zip(names(list(selection.cards)), selection.renamed_by, strict=True)),
        [(d.card.name, d.reason, d.rule) for d in selection.dropped],
    )


class RuleTraceTests(SynchronousTestCase):
    """Which rule renamed or dropped each card: the provenance's `rule`."""

    def test_filter_and_transform_indices(self) -> None:
        pipeline = rules(
            {"type": "filter", "selectionPatterns": ["+vec *", "-v ORIGIN"]},
            {"type": "transform", "selectionPatterns": ["+e INS *"], "regex": "^INS ",
             "format": "INS2 "},
            {"type": "filter", "selectionPatterns": ["+vec *", "-e INS2 TEMP1 *"]},
            {"type": "transform", "selectionPatterns": ["+e INS2 TEMP3 *"], "regex": "TEMP",
             "format": "T"},
            {"type": "transform", "selectionPatterns": ["+v VALUEKW"], "regex": "X",
             "format": "Y"},
        )  # fmt: skip
        kept_cards, dropped = outcome(FCS, pipeline)
        self.assertEqual(
            kept_cards,
            [("VALUEKW", None), ("INS2 FILT1 ID", 1), ("INS2 T3 VAL", 3), ("DET DIT", None),
             ("COMMENT", None)],
        )  # fmt: skip
        self.assertEqual(
            dropped,
            [("SIMPLE", "structure", None), ("BITPIX", "structure", None),
             ("NAXIS", "structure", None), ("ORIGIN", "filter", 0),
             ("INS TEMP1 VAL", "filter", 2), ("DATE", "reserved", None),
             ("CHECKSUM", "reserved", None)],
        )  # fmt: skip

    def test_empty_rules(self) -> None:
        kept_cards, dropped = outcome(FCS[3:5], ())
        self.assertEqual(kept_cards, [])
        self.assertEqual(dropped, [("VALUEKW", "no-rules", None), ("ORIGIN", "no-rules", None)])

    def test_array_keywords_and_stray_continue(self) -> None:
        cards = header("NAXIS   = 2", "BUNIT   = 'adu'", "CONTINUE  'x'", "OBJECT  = 'o'", "")
        kept_cards, dropped = outcome(cards, None, data_dropped=True)
        self.assertEqual(kept_cards, [("OBJECT", None)])
        self.assertEqual(
            dropped,
            [("NAXIS", "structure", None), ("BUNIT", "array", None),
             ("CONTINUE", "stray", None)],
        )  # fmt: skip

    def test_rename_that_no_record_holds(self) -> None:
        cards = header("HIERARCH ESO INS A = '" + "x" * 50 + "'")
        pipeline = rules(
            {"type": "filter", "selectionPatterns": ["+e *"]},
            {"type": "transform", "selectionPatterns": ["+e *"], "regex": "^INS A$",
             "format": "INS " + "B" * 58},
        )  # fmt: skip
        selection = apply_rules(cards, pipeline, "s")
        self.assertEqual(selection.cards, ())
        self.assertEqual([(d.reason, d.rule) for d in selection.dropped], [("too-long", 1)])
        self.assertEqual(selection.dropped[0].card, cards[0])


def value(name: str, val: object) -> Card:
    return render_keyword(VALUE, name, val)


def eso(name: str, val: object = 1) -> Card:
    return render_keyword(ESO, name, val)


class MergeTests(SynchronousTestCase):
    def test_first_source_wins(self) -> None:
        merged = merged_cards(
            [
                Contribution("a", 0, (value("OBJECT", "a"), eso("DET DIT", 1))),
                Contribution("b", 1, (value("OBJECT", "b"), eso("DET DIT", 2), value("EXTRA", 1))),
            ]
        )
        self.assertEqual(
            [(c.name, c.value) for c in merged],
            [("OBJECT", "'a       '"), ("EXTRA", "1"), ("DET DIT", "1")],
        )

    def test_base_position_source_value(self) -> None:
        """An in-place target contributes first (position) with the lowest rank (value)."""
        merged = merged_cards(
            [
                Contribution("target", 9, (value("ORIGIN", "t"), value("OBJECT", "t"))),
                Contribution("ocm", 0, (value("TELESCOP", "o"), value("OBJECT", "o"))),
            ]
        )
        self.assertEqual(
            [(c.name, c.value) for c in merged],
            [("ORIGIN", "'t       '"), ("OBJECT", "'o       '"), ("TELESCOP", "'o       '")],
        )

    def test_later_duplicate_within_one_source_wins(self) -> None:
        merged = merged_cards([Contribution("a", 0, (value("A", 1), value("A", 2)))])
        self.assertEqual([c.value for c in merged], ["2"])

    def test_commentary_appended_in_priority_order(self) -> None:
        first = header("COMMENT one", "HISTORY two")
        second = header("COMMENT one", "COMMENT three")
        merged = merged_cards(
            [Contribution("a", 0, tuple(first)), Contribution("b", 1, tuple(second))]
        )
        self.assertEqual(
            [c.records[0].rstrip() for c in merged],
            ["COMMENT one", "HISTORY two", "COMMENT one", "COMMENT three"],
        )

    def test_sort_order(self) -> None:
        cards = (
            eso("ZZZ A"),
            value("OBJECT", "x"),
            eso("DET DIT"),
            *header("COMMENT c"),
            eso("INS B"),
            eso("ABC Q"),
            eso("DPR CATG"),
            eso("TEL AIRM"),
            eso("INS A"),
            eso("OBS ID"),
            eso("TPL ID"),
            eso("GEN X"),
            eso("ADA POSANG"),
            value("RA", 1.0),
            eso("DET CHIP GAIN"),
            eso("OCS TEMPL ID"),
        )
        merged = merged_cards([Contribution("a", 0, cards)])
        self.assertEqual(
            names(merged),
            [
                "OBJECT",
                "RA",
                "DPR CATG",
                "OBS ID",
                "TPL ID",
                "GEN X",
                "TEL AIRM",
                "ADA POSANG",
                "INS A",
                "INS B",
                "DET CHIP GAIN",
                "DET DIT",
                "ABC Q",
                "OCS TEMPL ID",
                "ZZZ A",
                "COMMENT",
            ],
        )

    def test_value_keywords_grouped_by_source(self) -> None:
        merged = merged_cards(
            [
                Contribution("a", 0, (value("OBJECT", "x"), value("RA", 1.0), value("DEC", 2.0))),
                Contribution("b", 1, (value("AIRMASS", 1.0), value("OBJECT", "y"))),
            ]
        )
        self.assertEqual(names(merged), ["OBJECT", "RA", "DEC", "AIRMASS"])


class HeaderTests(SynchronousTestCase):
    def test_new_file_structure(self) -> None:
        self.assertEqual(
            [r[:30].rstrip() for r in structure_records(None)],
            [
                "SIMPLE  =                    T",
                "BITPIX  =                    8",
                "NAXIS   =                    0",
                "EXTEND  =                    T",
            ],
        )

    def test_target_structure_kept_in_order(self) -> None:
        target = header(
            "SIMPLE  = T",
            "BITPIX  = 16",
            "NAXIS   = 2",
            "NAXIS2  = 5",
            "NAXIS1  = 4",
            "OBJECT  = 'x'",
            "BZERO   = 32768",
            "EXTEND  = F",
            "BSCALE  = 1",
        )
        self.assertEqual(
            [r.split("=")[0].rstrip() for r in structure_records(target)],
            ["SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO", "BSCALE"],
        )
        self.assertIn("EXTEND  =                    T", structure_records(target)[5])

    def test_reserved(self) -> None:
        records = reserved_records("F.fits", "p_F.fits", "2024-01-01T00:00:00.000")
        self.assertEqual([r[:8].rstrip() for r in records], ["ARCFILE", "ORIGFILE", "DATE"])
        self.assertIn("'p_F.fits'", records[1])

    def test_padding_to_existing_blocks(self) -> None:
        plain = build_header(structure_cards(None)[0], [], [])
        self.assertEqual(plain.blocks, 1)
        padded = build_header(structure_cards(None)[0], [], [], min_blocks=3)
        self.assertEqual(padded.blocks, 3)
        self.assertEqual(padded.size, 3 * 2880)
        self.assertEqual(len(padded.records), 72)  # END opens the last block
        self.assertEqual(padded.records[-1], BLANK_RECORD)
        many = [value(f"K{n}", n) for n in range(40)]
        header = build_header(structure_cards(None)[0], [], placed(many), min_blocks=1)
        self.assertEqual(header.blocks, 2)

    def test_checksum_records_last(self) -> None:
        product = build_header(structure_cards(None)[0], [], placed([value("A", 1)]))
        rendered = header_bytes(product.final_records(0)).decode()
        keys = [rendered[i : i + 8].rstrip() for i in range(0, len(rendered), 80)]
        self.assertEqual(
            keys[:7], ["SIMPLE", "BITPIX", "NAXIS", "EXTEND", "A", "CHECKSUM", "DATASUM"]
        )
        self.assertEqual(keys[7], "END")
