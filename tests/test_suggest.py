"""The shared wording of refused names (dpmd.suggest)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from dpmd.suggest import MAX_NAMED, nearest, not_allowed, sentences


class NearestTests(SynchronousTestCase):
    def test_a_typo_a_missing_letter_and_case(self) -> None:
        known = ["daq", "merge", "transfer"]
        self.assertEqual(nearest("merg", known), "merge")
        self.assertEqual(nearest("Transfers", known), "transfer")
        self.assertEqual(nearest("tranfser", known), "transfer")

    def test_nothing_close(self) -> None:
        self.assertIsNone(nearest("colour", ["daq", "merge", "transfer"]))
        self.assertIsNone(nearest("keywordRules", ["id", "keywordDictionaries"]))
        self.assertIsNone(nearest("x", []))


class NotAllowedTests(SynchronousTestCase):
    def test_one_clause_per_suggestion_and_one_for_the_rest(self) -> None:
        clauses = not_allowed(["merg", "colour", "size", "daqs"], ["daq", "merge"], "limits.")
        self.assertEqual(
            clauses,
            ["'limits.colour', 'limits.size' are not allowed "
             "(allowed: limits.daq, limits.merge)",
             "'limits.merg' is not allowed; did you mean 'limits.merge'?",
             "'limits.daqs' is not allowed; did you mean 'limits.daq'?"],
        )  # fmt: skip

    def test_many_names_are_counted_beyond_the_first(self) -> None:
        unknown = [f"n{i}" for i in range(MAX_NAMED + 5)]
        (clause,) = not_allowed(unknown, ["id"])
        self.assertTrue(clause.startswith("'n0', 'n1', "), clause)
        self.assertIn(f"'n{MAX_NAMED - 1}' and 5 more are not allowed (allowed: id)", clause)
        self.assertNotIn(f"'n{MAX_NAMED}'", clause)

    def test_long_names_are_cut(self) -> None:
        (clause,) = not_allowed(["x" * 1000], ["id"])
        self.assertEqual(clause, f"'{'x' * 64}'... is not allowed (allowed: id)")

    def test_sentences(self) -> None:
        self.assertEqual(sentences(["a is not allowed"]), "a is not allowed")
        self.assertEqual(
            sentences(["a is not allowed", "b is not allowed; did you mean c?", "d"]),
            "a is not allowed. b is not allowed; did you mean c? d",
        )
