"""Specifications as an attacker or a broken client would send them (dpmd.spec).

Whatever the input, parse_specification raises SpecificationError (never
RecursionError or an encoding error), and its messages are short, name the
JSON path, and can be encoded as UTF-8.
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dpmd.spec import SpecificationError, parse_specification
from dpmd.spec.document import MAX_MESSAGE, DocumentError, decode, problems, text_problems

from .fitsfactory import run_cli, write_fits, write_spec


def minimal(**extra: object) -> dict:
    spec = {"id": "TEST.1", "sources": [], "target": {"fileId": "TEST.2024-01-01T00:00:00.000"}}
    spec.update(extra)
    return spec


def file_source(**extra: object) -> dict:
    return {"type": "fitsFile", "sourceName": "f", "location": "/data/f.fits", **extra}


def keywords_source(*keywords: dict, **extra: object) -> dict:
    return {"type": "fitsKeywords", "sourceName": "ocm", "keywords": list(keywords), **extra}


def transform(regex: str, fmt: str = "X", pattern: str = "+e *") -> dict:
    return {"type": "transform", "selectionPatterns": [pattern], "regex": regex, "format": fmt}


class HostileTestCase(SynchronousTestCase):
    def refused(self, document: object) -> list[str]:
        """The errors of a refused specification; each one checked to be safe to send."""
        with self.assertRaises(SpecificationError) as caught:
            parse_specification(document)  # type: ignore[arg-type]
        errors = caught.exception.errors
        self.assertTrue(errors)
        for message in errors:
            message.encode("utf-8")
            json.dumps(message, ensure_ascii=False).encode("utf-8")
            self.assertLessEqual(len(message), MAX_MESSAGE)
        str(caught.exception).encode("utf-8")
        return errors


class SurrogateTests(HostileTestCase):
    """A lone surrogate anywhere is refused, named by its path, and never quoted."""

    def test_location(self) -> None:
        document = minimal(sources=[file_source(location="/data/\udcff.fits")])
        for form in (document, json.dumps(document), json.dumps(document).encode()):
            errors = self.refused(form)
            self.assertEqual(len(errors), 1, errors)
            self.assertTrue(errors[0].startswith("$.sources[0].location: string cannot be"))
            self.assertIn("U+DCFF", errors[0])

    def test_keyword_value_comment_and_names(self) -> None:
        keyword = {
            "type": "valueKeyword",
            "name": "OBJECT",
            "value": "a\ud800b",
            "comment": "\udfff",
        }
        document = minimal(
            id="X\udc80",
            sources=[keywords_source(keyword), file_source(sourceName="f\udcff")],
        )
        paths = sorted(error.split(": ", 1)[0] for error in self.refused(document))
        self.assertEqual(
            paths,
            [
                "$.id",
                "$.sources[0].keywords[0].comment",
                "$.sources[0].keywords[0].value",
                "$.sources[1].sourceName",
            ],
        )

    def test_object_key(self) -> None:
        document = minimal()
        document["target"]["\udcff"] = 1
        (error,) = self.refused(document)
        self.assertTrue(error.startswith("$.target: key string cannot be encoded"), error)

    def test_escaped_surrogate_in_text(self) -> None:
        text = json.dumps(minimal(sources=[file_source(location="/x")])).replace("/x", "\\udcff")
        (error,) = self.refused(text)
        self.assertTrue(error.startswith("$.sources[0].location:"), error)


class DepthTests(HostileTestCase):
    """Any depth is an invalid specification, never a RecursionError."""

    DEPTH = 100_000

    def test_deep_text(self) -> None:
        for text in (
            "[" * self.DEPTH + "]" * self.DEPTH,
            '{"a":' * self.DEPTH + "1" + "}" * self.DEPTH,
        ):
            for form in (text, text.encode()):
                (error,) = self.refused(form)
                self.assertEqual(error, "$: not valid JSON: nested too deeply")

    def test_deep_value_inside_a_specification(self) -> None:
        text = json.dumps(minimal(keywordDictionaries="HOLE")).replace(
            '"HOLE"', "[" * self.DEPTH + "]" * self.DEPTH
        )
        self.assertIn("nested too deeply", self.refused(text)[0])

    def test_deep_mapping(self) -> None:
        nested: object = []
        for _ in range(self.DEPTH):
            nested = [nested]
        (error,) = self.refused(minimal(keywordDictionaries=nested))
        self.assertTrue(error.startswith("$.keywordDictionaries[0][0]"), error)
        self.assertTrue(error.endswith("nested deeper than 32 levels"), error)


class NumberAndSizeTests(HostileTestCase):
    def test_numbers_beyond_a_double(self) -> None:
        text = json.dumps(
            minimal(
                sources=[keywords_source({"type": "valueKeyword", "name": "BIG", "value": 1.5})]
            )
        ).replace("1.5", "-1e400")
        (error,) = self.refused(text)
        self.assertEqual(
            error, "$.sources[0].keywords[0].value: number out of the range of a 64-bit real"
        )
        self.refused(minimal(alertUnmergeable=float("nan")))

    def test_huge_integers(self) -> None:
        self.assertIn("not valid JSON", self.refused('{"id": ' + "9" * 5000 + "}")[0])
        huge = {"type": "valueKeyword", "name": "BIG", "value": 10**4000}
        (error,) = self.refused(minimal(sources=[keywords_source(huge)]))
        self.assertIn("does not fit in 64 bits", error)
        self.refused(minimal(sources=[keywords_source(dict(huge, value=10**100_000))]))

    def test_huge_strings(self) -> None:
        big = "x" * 1_000_000
        errors = self.refused(minimal(id=big, sources=[file_source(sourceName=big, location=big)]))
        self.assertTrue(errors)
        eso = {"type": "esoKeyword", "name": "A", "value": big}
        self.assertIn("longer than", self.refused(minimal(sources=[keywords_source(eso)]))[0])

    def test_not_json_values(self) -> None:
        errors = self.refused(minimal(keywordDictionaries={"a", "b"}))
        self.assertEqual(errors, ["$.keywordDictionaries: set is not a JSON value"])


class RegexTests(HostileTestCase):
    """Rules are compiled with RE2: what cannot be matched in linear time is refused."""

    def test_backreference_and_look_around_refused(self) -> None:
        for regex in (r"(A)\1", r"INS(?=2)", r"(?<!X)INS", r"(?>A+)"):
            rules = [{"type": "filter", "selectionPatterns": ["+e *"]}, transform(regex)]
            (error,) = self.refused(minimal(sources=[file_source(keywordRules=rules)]))
            self.assertTrue(
                error.startswith(
                    f"$.sources[0].keywordRules[1].regex: regular expression {regex!r} "
                    "cannot be matched in linear time"
                ),
                error,
            )

    def test_syntax_errors_still_named_as_such(self) -> None:
        (error,) = self.refused(minimal(sources=[file_source(keywordRules=[transform("(")])]))
        self.assertTrue(error.startswith("$.sources[0].keywordRules[0].regex: invalid regular"))

    def test_nested_quantifier_is_accepted(self) -> None:
        spec = parse_specification(
            minimal(sources=[file_source(keywordRules=[transform("(A+)+B")])])
        )
        rule = spec.sources[0].keyword_rules[0]
        self.assertEqual(rule.rename("C" + "A" * 40 + "B"), "CX")

    def test_nested_quantifier_merge_ends(self) -> None:
        """The issue's merge: `(A+)+B` over a 40-character ESO name, as a real child."""
        root = os.path.abspath(self.mktemp())
        name = "A" * 40
        source = write_fits(os.path.join(root, "s.fits"), [(f"HIERARCH ESO {name}", 1)])
        rules = [transform("(A+)+B", "X", "+e *")]
        spec = write_spec(
            os.path.join(root, "spec.json"),
            minimal(sources=[file_source(location=source, keywordRules=rules)]),
        )
        result = run_cli(["--json", "-o", os.path.join(root, "out.fits"), spec], timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)


class FitsKeywordsRenameTests(HostileTestCase):
    """Renames of keywords given in the specification are checked when it is queued."""

    def test_rename_that_cannot_fit_refused_at_validation(self) -> None:
        keyword = {"type": "esoKeyword", "name": "INS A", "value": 12345}
        rules = [transform("^INS A$", "INS " + "B" * 58)]
        (error,) = self.refused(minimal(sources=[keywords_source(keyword, keywordRules=rules)]))
        self.assertTrue(
            error.startswith("$.sources[0].keywordRules[0]: renaming 'INS A' to 'INS BBB"), error
        )
        self.assertIn("a record has 80", error)

    def test_rename_to_a_bad_name_refused_at_validation(self) -> None:
        keyword = {"type": "valueKeyword", "name": "OBJECT", "value": "x"}
        rules = [transform("^OBJECT$", "NAXIS", "+v *")]
        (error,) = self.refused(minimal(sources=[keywords_source(keyword, keywordRules=rules)]))
        self.assertTrue(error.startswith("$.sources[0].keywordRules[0]: renaming 'OBJECT'"), error)

    def test_long_string_rename_is_continued(self) -> None:
        keyword = {"type": "esoKeyword", "name": "INS FILT1 NAME", "value": "N" * 49}
        rules = [transform("^INS ", "INS2 ")]
        parse_specification(minimal(sources=[keywords_source(keyword, keywordRules=rules)]))


class TextFastPathTests(SynchronousTestCase):
    """``text_problems`` skips the full walk when the text shows nothing to refuse; it
    must find exactly what ``problems`` finds, whatever the text."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
        | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF)),
        lambda children: st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=3), children, max_size=3),
        max_leaves=60,
    ), st.booleans(), st.booleans())  # fmt: skip
    def test_same_findings_as_the_walk(self, document: object, as_bytes: bool,
                                       ascii_only: bool) -> None:  # fmt: skip
        text: str | bytes = json.dumps(document, ensure_ascii=ascii_only)
        if as_bytes:
            text = text.encode("utf-8", "surrogatepass")
        try:
            decoded = decode(text)
        except DocumentError:
            return  # NaN and infinities are refused before (as parse_specification does)
        self.assertEqual(text_problems(text, decoded), problems(decoded))

    def test_each_suspect_is_caught(self) -> None:
        deep = "[" * 40 + "]" * 40
        for value in ('"\\ud800"', '"\ud800"', "1e400", "-2.5E+999", "1" + "0" * 400 + ".0", deep):
            for text in (f'{{"v": {value}}}', f'{{"v": {value}}}'.encode("utf-8", "surrogatepass")):
                decoded = decode(text)
                self.assertEqual(text_problems(text, decoded), problems(decoded))
                self.assertTrue(problems(decoded), value)

    def test_decode_reads_what_json_loads_reads(self) -> None:
        """One decoder for every call, with ``json.loads``'s handling of encodings."""
        document = {"id": "D.\u00e9", "n": [1, 2.5, None, True]}
        texts: list[str | bytes] = [json.dumps(document), json.dumps(document).encode()]
        texts += [json.dumps(document).encode(codec) for codec in ("utf-16", "utf-32-le")]
        texts.append(b"\xef\xbb\xbf" + json.dumps(document).encode())  # BOM: bytes accept it
        for text in texts:
            self.assertEqual(decode(text), json.loads(text))
        for refused in ("\ufeff" + json.dumps(document), '{"v": NaN}', b"\xff{}"):
            with self.assertRaises(DocumentError):
                decode(refused)
