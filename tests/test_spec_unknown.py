"""Names a specification's object does not allow: each one named, with the nearest allowed
name of that object's own level (dpmd.spec, through dpmd.suggest)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from dpmd.spec import SpecificationError, parse_specification
from dpmd.spec.document import MAX_MESSAGE

from .test_spec_hostile import file_source, minimal


def receiver(**extra: object) -> dict:
    return {"type": "olasReceiver", "path": "/archive/in", **extra}


class UnknownNameTests(SynchronousTestCase):
    def refused(self, document: dict) -> list[str]:
        error = self.assertRaises(SpecificationError, parse_specification, document)
        return error.errors

    def test_a_source_key_suggests_the_source_key(self) -> None:
        errors = self.refused(minimal(sources=[file_source(keywordRule=[])]))
        self.assertEqual(
            errors, ["$.sources[0]: 'keywordRule' is not allowed; did you mean 'keywordRules'?"]
        )

    def test_every_unknown_key_of_an_object_is_named_at_once(self) -> None:
        errors = self.refused(minimal(sources=[file_source(keywordRule=[], alertUnmergable=False)]))
        self.assertEqual(
            errors,
            ["$.sources[0]: 'keywordRule' is not allowed; did you mean 'keywordRules'? "
             "'alertUnmergable' is not allowed; did you mean 'alertUnmergeable'?"],
        )  # fmt: skip

    def test_a_name_like_none_lists_what_the_level_allows(self) -> None:
        errors = self.refused(minimal(colour="red", keywordRules=[]))
        self.assertEqual(
            errors,
            ["$: 'colour', 'keywordRules' are not allowed "
             "(allowed: id, sources, target, keywordDictionaries, receivers)"],
        )  # fmt: skip

    def test_suggestions_come_from_the_level_of_the_object(self) -> None:
        """A receiver's typo is matched against a receiver's keys, its options' against
        the options', a rule's against the keys of a rule of that type."""
        rule = {"type": "filter", "selectionPattern": ["+e *"]}
        document = minimal(
            sources=[file_source(keywordRules=[rule])],
            target={"fileId": "T.1", "filePrefx": "p"},
            receivers=[receiver(hots="h", options={"Manifest": False})],
        )
        self.assertEqual(
            self.refused(document),
            [
                "$.receivers[0]: 'hots' is not allowed; did you mean 'host'?",
                "$.receivers[0].options: 'Manifest' is not allowed; did you mean 'manifest'?",
                "$.sources[0].keywordRules[0]: 'selectionPatterns' is a required property",
                "$.sources[0].keywordRules[0]: 'selectionPattern' is not allowed; "
                "did you mean 'selectionPatterns'?",
                "$.target: 'filePrefx' is not allowed; did you mean 'filePrefix'?",
            ],
        )

    def test_a_transform_rule_allows_more_than_a_filter(self) -> None:
        rule = {"type": "transform", "selectionPatterns": ["+e *"], "regex": "^A", "formt": "B"}
        errors = self.refused(minimal(sources=[file_source(keywordRules=[rule])]))
        self.assertIn(
            "$.sources[0].keywordRules[0]: 'formt' is not allowed; did you mean 'format'?",
            errors,
        )

    def test_thousands_of_unknown_keys_make_one_short_message(self) -> None:
        document = minimal(**{f"extra{i}": i for i in range(5000)})
        (error,) = self.refused(document)
        self.assertTrue(error.startswith("$: 'extra0', 'extra1', "), error)
        self.assertLessEqual(len(error), MAX_MESSAGE)

    def test_other_schema_messages_are_left_as_they_were(self) -> None:
        errors = self.refused(minimal(sources=[file_source(alertUnmergeable="yes")]))
        self.assertEqual(errors, ["$.sources[0].alertUnmergeable: 'yes' is not of type 'boolean'"])
