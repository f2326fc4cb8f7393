"""Selection patterns, filters and transform formats (dpmd.spec.rules)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from dpmd.spec.cards import KeywordKind
from dpmd.spec.rules import (
    RuleError,
    TransformRule,
    compile_regex,
    parse_format,
    parse_pattern,
    select,
)

VALUE, ESO, COMMENTARY = KeywordKind.VALUE, KeywordKind.ESO, KeywordKind.COMMENTARY


def transform(regex: str, fmt: str) -> TransformRule:
    compiled = compile_regex(regex)
    return TransformRule((), compiled, fmt, parse_format(fmt, compiled.groups))


class PatternGrammarTests(SynchronousTestCase):
    def test_valid_patterns(self) -> None:
        pattern = parse_pattern("+e INS *")
        self.assertEqual((pattern.include, pattern.kinds, pattern.glob), (True, {ESO}, "INS *"))
        pattern = parse_pattern("-vc DATE*")
        self.assertEqual((pattern.include, pattern.kinds), (False, {VALUE, COMMENTARY}))
        self.assertEqual(parse_pattern("+vec *").kinds, {VALUE, ESO, COMMENTARY})

    def test_glob_compared_in_upper_case(self) -> None:
        self.assertTrue(parse_pattern("+e ins filt?").matches(ESO, "INS FILT1"))

    def test_malformed_patterns(self) -> None:
        cases = {
            "": "must start with '+'",
            "e INS *": "must start with '+'",
            "*e INS": "must start with '+'",
            "+x INS": "unknown kind letter 'x'",
            "+ee INS": "kind letter 'e' repeated",
            "+ INS": "names no keyword kind",
            "+eINS": "needs one space",
            "+e": "no name pattern",
            "+e ": "no name pattern",
            "+e  INS": "must not start or end with a space",
            "+e INS ": "must not start or end with a space",
        }
        for text, message in cases.items():
            with self.assertRaises(RuleError, msg=text) as caught:
                parse_pattern(text)
            self.assertIn(message, str(caught.exception), text)

    def test_glob_semantics(self) -> None:
        cases = [
            ("+e INS *", ESO, "INS FILT1 ID", True),
            ("+e INS *", ESO, "INSX FILT", False),  # the space is part of the glob
            ("+e INS *", ESO, "INS", False),
            ("+e INS TEMP[12] *", ESO, "INS TEMP1 VAL", True),
            ("+e INS TEMP[12] *", ESO, "INS TEMP3 VAL", False),
            ("+e INS TEMP[!12] *", ESO, "INS TEMP3 VAL", True),
            ("+e DET CHIP? GAIN", ESO, "DET CHIP1 GAIN", True),
            ("+e DET CHIP? GAIN", ESO, "DET CHIP12 GAIN", False),
            ("+v VALUEKW", VALUE, "VALUEKW", True),
            ("+v VALUEKW", ESO, "VALUEKW", False),  # wrong kind
            ("+v VALUE", VALUE, "VALUEKW", False),  # whole-name match
            ("+c *", COMMENTARY, "", True),  # blank-name commentary
            ("+c HISTORY", COMMENTARY, "HISTORY", True),
            ("+e [", ESO, "[", True),  # unbalanced bracket is literal
        ]
        for text, kind, name, expected in cases:
            self.assertEqual(parse_pattern(text).matches(kind, name), expected, (text, name))


class SelectTests(SynchronousTestCase):
    keys = [
        (VALUE, "VALUEKW"),
        (VALUE, "ORIGIN"),
        (ESO, "INS FILT1 ID"),
        (ESO, "INS TEMP1 VAL"),
        (ESO, "INS TEMP3 VAL"),
        (ESO, "DET DIT"),
        (COMMENTARY, "COMMENT"),
    ]

    def choose(self, *patterns: str) -> list[str]:
        flags = select([parse_pattern(p) for p in patterns], self.keys)
        return [name for (_, name), keep in zip(self.keys, flags, strict=True) if keep]

    def test_starts_empty(self) -> None:
        self.assertEqual(self.choose(), [])
        self.assertEqual(self.choose("-e *"), [])

    def test_reference_example(self) -> None:
        self.assertEqual(
            self.choose("+e INS *", "-e INS TEMP[12] *", "+v VALUEKW"),
            ["VALUEKW", "INS FILT1 ID", "INS TEMP3 VAL"],
        )

    def test_order_matters(self) -> None:
        self.assertEqual(
            self.choose("-e INS TEMP1 *", "+e INS *"),
            ["INS FILT1 ID", "INS TEMP1 VAL", "INS TEMP3 VAL"],
        )
        self.assertEqual(
            self.choose("+e *", "-e INS *", "+e INS TEMP3 VAL"), ["INS TEMP3 VAL", "DET DIT"]
        )

    def test_kinds(self) -> None:
        self.assertEqual(self.choose("+vc *"), ["VALUEKW", "ORIGIN", "COMMENT"])


class FormatTests(SynchronousTestCase):
    def test_reference_transform(self) -> None:
        rule = transform("^INS ", "INS2 ")
        self.assertEqual(rule.rename("INS FILT1 ID"), "INS2 FILT1 ID")
        self.assertEqual(rule.rename("DET INS X"), "DET INS X")

    def test_back_references(self) -> None:
        self.assertEqual(transform(r"^(\w+) (\w+)", "$2 $1").rename("INS FILT ID"), "FILT INS ID")
        self.assertEqual(transform("TEMP", "[$&]").rename("INS TEMP1"), "INS [TEMP]1")
        self.assertEqual(transform("TEMP", "$0$0").rename("TEMP"), "TEMPTEMP")
        self.assertEqual(transform("B", "$`|$'").rename("ABC"), "AA|CC")
        self.assertEqual(transform("A", "$$1").rename("A"), "$1")
        self.assertEqual(transform("A", "x$").rename("A"), "x$")
        self.assertEqual(transform("A", r"\1").rename("A"), r"\1")  # backslashes are literal

    def test_replaces_every_match(self) -> None:
        self.assertEqual(transform("1", "2").rename("DET CHIP1 OUT1"), "DET CHIP2 OUT2")

    def test_empty_matches_as_python_and_ecmascript(self) -> None:
        """RE2 finds the matches; each one is replaced once, an empty one too."""
        cases = [
            ("$", "AB", "AB-"),
            ("x*", "abxd", "-a-b--d-"),
            (r"\b", "AB CD", "-AB- -CD-"),
            ("A*$", "BAA", "B--"),
            ("", "AB", "-A-B-"),
            ("", "", "-"),
            ("a|", "ba", "-b--"),
        ]
        for regex, name, renamed in cases:
            self.assertEqual(transform(regex, "-").rename(name), renamed, (regex, name))

    def test_two_digit_groups(self) -> None:
        regex = "".join(f"({chr(65 + n)})" for n in range(12))
        self.assertEqual(transform(regex, "$12").rename("ABCDEFGHIJKL"), "L")
        self.assertEqual(transform("(A)", "$12").rename("A"), "A2")

    def test_undefined_group_is_an_error(self) -> None:
        self.assertRaises(RuleError, parse_format, "$2", 1)
        self.assertRaises(RuleError, parse_format, "$1", 0)
        self.assertEqual(parse_format("plain", 0), ("plain",))

    def test_bad_regex(self) -> None:
        self.assertRaises(RuleError, compile_regex, "(")
        self.assertRaises(RuleError, compile_regex, "[a-")
