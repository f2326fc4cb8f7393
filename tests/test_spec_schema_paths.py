"""The compiled schema check (fast path) and ``jsonschema`` always agree on validity.

The server accepts a specification when the compiled check passes, and asks
``jsonschema`` to explain the ones that fail; if the two ever disagreed, an
invalid specification could be accepted.  Hypothesis puts arbitrary JSON values
at arbitrary places of valid specifications.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import fastjsonschema
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dpmd.spec.parse import _const_as_enum, _fast_check, _validator
from tests.fitsfactory import SPECS, example

EXAMPLES = sorted(name for name in os.listdir(SPECS) if name.endswith(".json"))
SPECIFICATIONS = ["dp-spec-inplace-full.json", "dp-spec-new-file-local.json"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=12) | st.sampled_from(["fitsFile", "fitsKeywords", "valueKeyword",
                                              "olasReceiver", "filter", "transform", ""]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["type", "sourceName", "location", "name", "value",
                                       "keywords", "id", "extra"]), children, max_size=3),
    max_leaves=8,
)  # fmt: skip


def places(document: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into the document (object members and array items)."""
    found = [path]
    if isinstance(document, dict):
        for key, value in document.items():
            found += places(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += places(value, (*path, index))
    return found


def verdicts(document: Any) -> tuple[bool, bool]:
    try:
        _fast_check()(document)
        fast = True
    except fastjsonschema.JsonSchemaException:
        fast = False
    return fast, _validator().is_valid(document)


class AgreementTests(SynchronousTestCase):
    def test_the_example_specifications_are_valid_for_both(self) -> None:
        for name in SPECIFICATIONS:
            with self.subTest(name):
                self.assertEqual(verdicts(example(name)), (True, True))

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(EXAMPLES), st.data(), json_values, st.booleans())
    def test_both_agree_whatever_is_changed(self, name: str, data: Any, value: Any,
                                            delete: bool) -> None:  # fmt: skip
        document = copy.deepcopy(example(name))
        path = data.draw(st.sampled_from(places(document)[1:] or [()]))
        if path:
            parent = document
            for step in path[:-1]:
                parent = parent[step]
            if delete:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        fast, slow = verdicts(document)
        self.assertEqual(fast, slow, f"{path}: {document}")


class ConstAsEnumTests(SynchronousTestCase):
    """The compiled check spells ``const`` as a one-value ``enum``, in schema places only."""

    def test_const_in_subschemas_becomes_a_one_value_enum(self) -> None:
        schema = {"allOf": [{"if": {"properties": {"type": {"const": "a"}}},
                             "then": {"items": {"const": 3}}}]}  # fmt: skip
        self.assertEqual(
            _const_as_enum(schema),
            {"allOf": [{"if": {"properties": {"type": {"enum": ["a"]}}},
                        "then": {"items": {"enum": [3]}}}]},
        )  # fmt: skip

    def test_a_property_named_const_and_data_are_left_alone(self) -> None:
        schema = {"properties": {"const": {"type": "string"}},
                  "examples": [{"const": 1}], "default": {"const": 2}}  # fmt: skip
        self.assertEqual(_const_as_enum(schema), schema)
