"""Parsing and validation of Data Product Specifications (dpmd.spec)."""

from __future__ import annotations

import copy
import json
import os

from twisted.trial.unittest import SynchronousTestCase

from dpmd.spec import (
    SCHEMA_PATH,
    EsoKeyword,
    FilterRule,
    FitsFileSource,
    FitsKeywordsSource,
    LiteralKeyword,
    OlasReceiver,
    Specification,
    SpecificationError,
    TransformRule,
    ValueKeyword,
    is_remote_location,
    load_schema,
    parse_specification,
)
from dpmd.spec.cards import KeywordKind

from .fitsfactory import example


def minimal(**extra: object) -> dict:
    spec = {"id": "TEST.1", "sources": [], "target": {"fileId": "TEST.2024-01-01T00:00:00.000"}}
    spec.update(extra)
    return spec


def keywords_source(*keywords: dict, name: str = "ocm", **extra: object) -> dict:
    return {"type": "fitsKeywords", "sourceName": name, "keywords": list(keywords), **extra}


class ExampleTests(SynchronousTestCase):
    """Every complete example of the reference parses; the skeleton does not."""

    def test_in_place_full(self) -> None:
        spec = parse_specification(json.dumps(example("dp-spec-inplace-full.json")))
        self.assertIsInstance(spec, Specification)
        self.assertEqual(spec.id, "TEST.2021-05-18T14:49:03.905")
        self.assertEqual(spec.file_id, "TEST.2021-05-18T14:49:03.905")
        self.assertEqual(spec.file_prefix, "")
        self.assertEqual([s.source_name for s in spec.sources], ["ocm", "tcs", "fcs"])
        ocm, tcs, fcs = spec.sources
        self.assertIsInstance(ocm, FitsKeywordsSource)
        self.assertEqual(
            [type(k) for k in ocm.keywords],
            [ValueKeyword, ValueKeyword, ValueKeyword, EsoKeyword, LiteralKeyword],
        )
        self.assertEqual(ocm.keywords[3], EsoKeyword("OCS TEMPL ID", "template-id"))
        self.assertEqual(tcs.keywords[0].value, 1.072)
        self.assertIsInstance(fcs, FitsFileSource)
        self.assertEqual(fcs.location, "fcs-host:/path/to/somefile.fits")
        self.assertTrue(fcs.is_remote)
        self.assertTrue(fcs.alert_unmergeable)
        self.assertIsInstance(fcs.keyword_rules[0], FilterRule)
        self.assertIsInstance(fcs.keyword_rules[1], TransformRule)
        self.assertEqual(
            [p.text for p in fcs.keyword_rules[0].patterns],
            ["+e INS *", "-e INS TEMP[12] *", "+v VALUEKW"],
        )
        self.assertEqual(spec.target_source.source_name, "dcs")
        self.assertEqual(spec.keyword_dictionaries, ("instrument.did",))
        self.assertEqual(spec.receivers, ())
        self.assertEqual([s.source_name for s in spec.file_sources()], ["dcs", "fcs"])

    def test_new_file_local(self) -> None:
        spec = parse_specification(example("dp-spec-new-file-local.json"))
        self.assertIsNone(spec.target_source)
        self.assertEqual(spec.product_name, "INSTR.2024-02-01T10:00:00.000.fits")
        self.assertEqual(spec.archive_name, "INSTR.2024-02-01T10:00:00.000.fits")
        dcs, _, tcs = spec.sources[1:]
        self.assertIsNone(dcs.keyword_rules)
        self.assertEqual(tcs.keyword_rules, ())
        self.assertFalse(dcs.is_remote)
        self.assertEqual(
            spec.sources[0].keywords[1].comment, "[deg] 03:32:20.9 RA (J2000) pointing"
        )

    def test_skeleton_is_not_a_specification(self) -> None:
        with self.assertRaises(SpecificationError) as caught:
            parse_specification(example("dp-spec-skeleton.json"))
        paths = [error.split(":")[0] for error in caught.exception.errors]
        self.assertIn("$.target.fileId", paths)
        self.assertIn("$.target.source", paths)

    def test_fragments_inside_a_specification(self) -> None:
        """The keyword, rule and receiver examples are accepted where they belong."""
        keywords = [
            *example("fits-keywords-array.json"),
            example("value-keyword.json"),
            example("eso-keyword.json"),
            example("literal-keyword.json"),
        ]
        source = keywords_source(
            *keywords,
            keywordRules=[
                *example("keyword-rules-filter-then-transform.json"),
                example("keyword-rule-filter.json"),
            ],
        )
        spec = parse_specification(minimal(sources=[source], receivers=example("receivers.json")))
        self.assertEqual(len(spec.sources[0].keywords), 5)
        self.assertEqual(spec.sources[0].keywords[3].name, "DET EXP ID")
        self.assertEqual(len(spec.sources[0].keyword_rules), 3)
        self.assertEqual(spec.receivers, (OlasReceiver("/olas/incoming", "10.10.125.1", True),))


class StructureTests(SynchronousTestCase):
    def test_accepts_text_bytes_and_dict(self) -> None:
        text = json.dumps(minimal())
        for document in (text, text.encode(), json.loads(text)):
            self.assertEqual(parse_specification(document).id, "TEST.1")

    def test_invalid_json(self) -> None:
        with self.assertRaises(SpecificationError) as caught:
            parse_specification("{not json")
        self.assertTrue(caught.exception.errors[0].startswith("$: not valid JSON"))

    def test_nan_is_not_json(self) -> None:
        text = json.dumps(minimal()).replace('"TEST.1"', '"TEST.1", "x": NaN')
        with self.assertRaises(SpecificationError):
            parse_specification(text)

    def test_every_violation_reported_with_its_path(self) -> None:
        spec = minimal(
            sources=[
                keywords_source({"type": "valueKeyword", "name": "OBJECT", "value": None}),
                {"type": "fitsFile", "sourceName": "dcs"},
                {"type": "bogus", "sourceName": "x"},
            ],
            extra=1,
        )
        spec["target"]["fileId"] = ""
        with self.assertRaises(SpecificationError) as caught:
            parse_specification(spec)
        errors = caught.exception.errors
        for path in (
            "$.sources[0].keywords[0].value",
            "$.sources[1]",
            "$.sources[2].type",
            "$.target.fileId",
            "$",
        ):
            self.assertTrue(any(e.startswith(path + ":") for e in errors), (path, errors))
        self.assertEqual(str(caught.exception), "; ".join(errors))

    def test_schema_rejections(self) -> None:
        cases = {
            "$.sources[0].keywords[0].value": {"type": "valueKeyword", "name": "A", "value": None},
            "$.sources[0].keywords[0].name": {
                "type": "valueKeyword",
                "name": "TOOLONGNAME",
                "value": 1,
            },
            "$.sources[0].keywords[0].comment": {
                "type": "valueKeyword",
                "name": "A",
                "value": 1,
                "comment": "caf\u00e9",
            },
        }
        cases["$.sources[0].keywords[0].value "] = {
            "type": "valueKeyword",
            "name": "A",
            "value": [1],
        }
        cases["$.sources[0].keywords[0].name "] = {
            "type": "esoKeyword",
            "name": "X" * 64,
            "value": 1,
        }
        cases["$.sources[0].keywords[0].value  "] = {"type": "literalKeyword", "value": "A" * 81}
        cases["$.sources[0].keywords[0]"] = {
            "type": "valueKeyword",
            "name": "A",
            "value": 1,
            "unit": "m",
        }
        for path, keyword in cases.items():
            with self.assertRaises(SpecificationError, msg=path) as caught:
                parse_specification(minimal(sources=[keywords_source(keyword)]))
            self.assertTrue(
                caught.exception.errors[0].startswith(path.strip() + ":"),
                (path, caught.exception.errors),
            )

    def test_target_and_receiver_rules(self) -> None:
        bad = [
            ({"fileId": "F", "filePrefix": "a/b"}, None, "$.target.filePrefix"),
            ({"fileId": "../x"}, None, "$.target.fileId"),
            ({"fileId": "F" * 40, "filePrefix": "P" * 30}, None, "$.target"),
            (
                {"fileId": "F"},
                [{"type": "olasReceiver", "path": "relative"}],
                "$.receivers[0].path",
            ),
            (
                {"fileId": "F"},
                [{"type": "olasReceiver", "path": "/x", "options": {"x": 1}}],
                "$.receivers[0].options",
            ),
        ]
        for target, receivers, path in bad:
            spec = minimal(target=target)
            if receivers is not None:
                spec["receivers"] = receivers
            with self.assertRaises(SpecificationError, msg=path) as caught:
                parse_specification(spec)
            self.assertTrue(
                caught.exception.errors[0].startswith(path + ":"), caught.exception.errors
            )

    def test_receivers(self) -> None:
        spec = parse_specification(
            minimal(
                receivers=[
                    {"type": "olasReceiver", "path": "/olas/in"},
                    {
                        "type": "olasReceiver",
                        "path": "/olas/b",
                        "host": "dhs",
                        "options": {"allowSymlink": False},
                    },
                ]
            )
        )
        self.assertEqual(
            spec.receivers,
            (OlasReceiver("/olas/in", "", True), OlasReceiver("/olas/b", "dhs", False)),
        )

    def test_file_prefix_and_alert_unmergeable(self) -> None:
        spec = parse_specification(
            minimal(
                sources=[
                    {
                        "type": "fitsFile",
                        "sourceName": "dcs",
                        "location": "a.fits",
                        "alertUnmergeable": False,
                    }
                ],
                target={
                    "fileId": "F.1",
                    "filePrefix": "instr_",
                    "source": {"type": "fitsFile", "sourceName": "t", "location": "t.fits"},
                },
            )
        )
        self.assertEqual(spec.product_name, "instr_F.1.fits")
        self.assertEqual(spec.archive_name, "F.1.fits")
        self.assertFalse(spec.sources[0].alert_unmergeable)
        self.assertEqual([s.source_name for s in spec.file_sources()], ["t", "dcs"])

    def test_duplicate_source_names(self) -> None:
        spec = minimal(
            sources=[
                keywords_source(name="dcs"),
                {"type": "fitsFile", "sourceName": "fcs", "location": "a.fits"},
            ],
            target={
                "fileId": "F",
                "source": {"type": "fitsFile", "sourceName": "dcs", "location": "t.fits"},
            },
        )
        with self.assertRaises(SpecificationError) as caught:
            parse_specification(spec)
        self.assertEqual(
            caught.exception.errors,
            [
                "$.target.source.sourceName: duplicate sourceName 'dcs' (also at "
                "$.sources[0].sourceName)"
            ],
        )
        spec["sources"].append(keywords_source(name="fcs"))
        with self.assertRaises(SpecificationError) as caught:
            parse_specification(spec)
        self.assertIn("$.sources[2].sourceName", caught.exception.errors[0])

    def test_rules_absent_versus_empty(self) -> None:
        spec = parse_specification(
            minimal(sources=[keywords_source(name="a"), keywords_source(name="b", keywordRules=[])])
        )
        self.assertIsNone(spec.sources[0].keyword_rules)
        self.assertEqual(spec.sources[1].keyword_rules, ())

    def test_rules_validated_at_parse_time(self) -> None:
        rules = [
            {"type": "filter", "selectionPatterns": ["+e INS *", "+x FOO"]},
            {"type": "transform", "selectionPatterns": ["+v *"], "regex": "(", "format": ""},
            {"type": "transform", "selectionPatterns": ["*"], "regex": "(A)", "format": "$2"},
        ]
        with self.assertRaises(SpecificationError) as caught:
            parse_specification(
                minimal(
                    sources=[
                        {
                            "type": "fitsFile",
                            "sourceName": "f",
                            "location": "f",
                            "keywordRules": rules,
                        }
                    ]
                )
            )
        errors = caught.exception.errors
        prefix = "$.sources[0].keywordRules"
        self.assertTrue(
            errors[0].startswith(f"{prefix}[0].selectionPatterns[1]: unknown kind letter 'x'"),
            errors,
        )
        self.assertTrue(errors[1].startswith(f"{prefix}[1].regex: invalid regular expression"))
        self.assertTrue(errors[2].startswith(f"{prefix}[2].selectionPatterns[0]: "))
        self.assertTrue(errors[3].startswith(f"{prefix}[2].format: format '$2' refers to group"))

    def test_keyword_semantics(self) -> None:
        bad = {
            "structure keyword 'NAXIS'": {"type": "valueKeyword", "name": "NAXIS", "value": 1},
            "structure keyword 'NAXIS1'": {"type": "literalKeyword", "value": "NAXIS1  = 3"},
            "'COMMENT' cannot be a value": {"type": "valueKeyword", "name": "COMMENT", "value": 1},
            "cannot be 'END'": {"type": "literalKeyword", "value": "END"},
            "invalid value": {"type": "literalKeyword", "value": "OBJECT  = not-a-value"},
            "unterminated string": {"type": "literalKeyword", "value": "OBJECT  = 'abc"},
            "does not fit in 64 bits": {"type": "valueKeyword", "name": "A", "value": 2**63},
            "a record has 80": {"type": "esoKeyword", "name": "A" * 63, "value": 12},
            "invalid ESO keyword name": {
                "type": "literalKeyword",
                "value": "HIERARCH ESO INS filt = 1",
            },
            "invalid keyword name": {"type": "literalKeyword", "value": "object  = 1"},
        }
        for message, keyword in bad.items():
            with self.assertRaises(SpecificationError, msg=message) as caught:
                parse_specification(minimal(sources=[keywords_source(keyword)]))
            self.assertTrue(
                any(message in e for e in caught.exception.errors),
                (message, caught.exception.errors),
            )

    def test_keyword_kinds_and_cards(self) -> None:
        spec = parse_specification(
            minimal(
                sources=[
                    keywords_source(
                        {"type": "valueKeyword", "name": "EXPTIME", "value": 2**62},
                        {"type": "esoKeyword", "name": "DET DIT", "value": 1.5, "comment": "s"},
                        {"type": "literalKeyword", "value": "HIERARCH ESO OCS TEMPL ID = 'x' / c"},
                        {"type": "literalKeyword", "value": "HISTORY made by hand"},
                    )
                ]
            )
        )
        cards = [k.card for k in spec.sources[0].keywords]
        self.assertEqual(
            [c.identity for c in cards],
            [
                (KeywordKind.VALUE, "EXPTIME"),
                (KeywordKind.ESO, "DET DIT"),
                (KeywordKind.ESO, "OCS TEMPL ID"),
                (KeywordKind.COMMENTARY, "HISTORY"),
            ],
        )
        self.assertEqual(cards[0].records[0].rstrip(), f"EXPTIME = {2**62:>20}")

    def test_unmodified_input(self) -> None:
        """Parsing never rewrites the caller's document (the server stores it as given)."""
        document = example("dp-spec-inplace-full.json")
        before = copy.deepcopy(document)
        parse_specification(document)
        self.assertEqual(document, before)


class SchemaFileTests(SynchronousTestCase):
    def test_schema_is_shipped(self) -> None:
        self.assertTrue(os.path.isfile(SCHEMA_PATH))
        self.assertEqual(os.path.dirname(SCHEMA_PATH).rsplit(os.sep, 2)[-2:], ["spec", "schema"])
        schema = load_schema()
        self.assertEqual(schema["$schema"], "https://json-schema.org/draft/2020-12/schema")
        self.assertEqual(schema["required"], ["id", "sources", "target"])

    def test_remote_locations(self) -> None:
        for location, remote in [
            ("host:/a/b.fits", True),
            ("user@host:/x", True),
            ("/abs/path.fits", False),
            ("rel/path.fits", False),
            ("./odd:name.fits", False),
            (":x", False),
        ]:
            self.assertEqual(is_remote_location(location), remote, location)
