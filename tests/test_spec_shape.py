"""msgspec's check of a specification's shape is never less strict than the schema.

``dpmd.spec.shape.fits_shape`` is asked before the schema; a ``True`` is taken
as the schema's.  So: every valid example takes the quick path, and of random
variations of them (a member removed, added, or given another value of any
JSON type), none that the quick check accepts is refused by the schema.
Examples are derandomized so the suite stays deterministic.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dpmd.spec import SpecificationError, load_schema, parse_specification
from dpmd.spec.shape import fits_shape
from tests.test_spec_schema_paths import places

EXAMPLES = sorted((Path(__file__).parent / "data" / "specs").glob("*.json"))
SCHEMA = jsonschema.Draft202012Validator(load_schema())
EVERY_MEMBER = {
    "id": "SHAPE.1",
    "sources": [
        {"type": "fitsKeywords", "sourceName": "ocm",
         "keywords": [{"type": "valueKeyword", "name": "OBJECT", "value": "M31", "comment": "c"},
                      {"type": "esoKeyword", "name": "DET DIT", "value": 1.5},
                      {"type": "literalKeyword", "value": "COMMENT hello"}],
         "keywordRules": [{"type": "filter", "selectionPatterns": ["+e *"]}]},
        {"type": "fitsFile", "sourceName": "dcs", "location": "host:/data/dcs.fits",
         "alertUnmergeable": False,
         "keywordRules": [{"type": "transform", "selectionPatterns": ["+e DET *"],
                           "regex": "^DET ", "format": "INS "}]},
    ],
    "target": {"fileId": "SHAPE.1", "filePrefix": "p-",
               "source": {"type": "fitsFile", "sourceName": "main", "location": "/d/m.fits"}},
    "keywordDictionaries": ["dict"],
    "receivers": [{"type": "olasReceiver", "path": "/out", "host": "h",
                   "options": {"allowSymlink": False, "manifest": True}}],
}  # fmt: skip
"""A specification with every member the schema names."""

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", "a b", "/abs/path", "host:/p.fits", "ÄÖ", "a\n", "TYPE",
                     "fitsFile", "fitsKeywords", "valueKeyword", "esoKeyword",
                     "literalKeyword", "filter", "transform", "olasReceiver", "+e *",
                     "x" * 81, "OBJECT", "DET CHIP1 NAME", "  ", "\x7f"]),
    st.text(max_size=70),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["type", "name", "value", "x", "path", "sourceName"]),
                      inner, max_size=3),
    max_leaves=6,
)


def mutated(document: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    """``document`` with the member at ``path`` replaced, removed, or given a sibling."""
    changed = copy.deepcopy(document)
    if not path:
        return value if how == "replace" else changed
    parent = changed
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "remove":
        del parent[last]
    elif isinstance(parent, dict):
        parent[f"{last}X"] = value  # a member the schema does not name
    else:
        parent.insert(last, value)
    return changed


class ShapeTests(SynchronousTestCase):
    def test_every_valid_example_takes_the_quick_path(self) -> None:
        valid = []
        for example in EXAMPLES:
            try:
                parse_specification(example.read_bytes())
            except SpecificationError:
                continue  # the skeleton: placeholders
            valid.append(example.name)
            self.assertTrue(fits_shape(json.loads(example.read_text())), example.name)
        self.assertGreaterEqual(len(valid), 2, valid)
        parse_specification(json.dumps(EVERY_MEMBER))
        self.assertTrue(fits_shape(EVERY_MEMBER))

    def test_a_refused_shape_is_explained_by_the_schema(self) -> None:
        document = json.loads(EXAMPLES[0].read_text())
        document["target"]["fileId"] = None
        self.assertFalse(fits_shape(document))
        self.assertTrue(list(SCHEMA.iter_errors(document)))

    @settings(max_examples=700, derandomize=True, deadline=None, database=None)
    @given(st.booleans(), st.integers(min_value=0),
           st.sampled_from(["replace", "remove", "add"]), values)  # fmt: skip
    def test_what_the_quick_check_accepts_the_schema_accepts(
        self, full: bool, where: int, how: str, value: Any
    ) -> None:
        document = copy.deepcopy(EVERY_MEMBER) if full else json.loads(
            (EXAMPLES[0].parent / "dp-spec-inplace-full.json").read_text())
        every = places(document)
        document = mutated(document, every[where % len(every)], how, value)
        if fits_shape(document):
            errors = [f"{list(e.absolute_path)}: {e.message}" for e in SCHEMA.iter_errors(document)]
            self.assertEqual(errors, [], json.dumps(document)[:500])
