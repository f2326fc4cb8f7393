"""Parse and validate a Data Product Specification.

First the document itself must be safe to look at (`document`: bounded
nesting, strings encodable as UTF-8, finite numbers); if it is not, nothing
else is checked. Then two passes, both reported together so a user fixes
everything in one round: the JSON Schema shipped in `schema/` (structure and
types), then the checks a schema cannot express (pattern grammar, regular
expressions, whether a keyword fits a FITS record, what the keyword rules of a
`fitsKeywords` source make of its keywords, duplicate source names). Every
message starts with the JSON path of the offending value.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from dpmd.suggest import not_allowed, sentences

from .cards import CardError, KeywordKind, cards_from_records, is_structure, render_keyword
from .document import DocumentError, decode, json_path, problems, shorten, text_problems
from .model import (
    EsoKeyword,
    FitsFileSource,
    FitsKeyword,
    FitsKeywordsSource,
    LiteralKeyword,
    OlasReceiver,
    Source,
    Specification,
    ValueKeyword,
)
from .pipeline import RenameError, is_user_keyword, run_rules
from .rules import (
    FilterRule,
    KeywordRule,
    RuleError,
    SelectionPattern,
    TransformRule,
    compile_regex,
    parse_format,
    parse_pattern,
)
from .shape import fits_shape

SCHEMA_PATH = Path(__file__).parent / "schema" / "dpspec.schema.json"
#: ORIGFILE = '{filePrefix}{fileId}.fits' must fit one fixed-format record.
_MAX_PRODUCT_STEM = 80 - len("ORIGFILE= '") - len(".fits'")


class SpecificationError(ValueError):
    """The specification is invalid; `errors` lists every violation with its JSON path."""

    def __init__(self, errors: Iterable[str]):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


@functools.cache
def load_schema() -> dict[str, Any]:
    """The shipped JSON Schema (draft 2020-12), for reuse by the server."""
    with SCHEMA_PATH.open(encoding="utf-8") as stream:
        return json.load(stream)


@functools.cache
def _validator() -> Any:
    import jsonschema  # deferred: only needed once a document is validated

    return jsonschema.Draft202012Validator(load_schema())


@functools.cache
def _fast_check() -> Callable[[Any], Any]:
    """The schema compiled to Python: twenty times faster than ``jsonschema`` on a valid
    document, which is nearly every document; ``jsonschema`` explains the others.

    Its exceptions carry no details (``jsonschema`` writes the messages), which
    saves building them for every ``if`` branch a valid document does not take:
    a third of the check's time.  ``const`` is spelt as a one-value ``enum``
    (the same constraint), because fastjsonschema cannot compile ``const``
    without details.
    """
    import fastjsonschema

    schema = _const_as_enum(load_schema())
    return cast(Callable[[Any], Any], fastjsonschema.compile(schema, detailed_exceptions=False))


#: Keywords whose value is a map of names to subschemas, and those whose value
#: is a subschema or a list of them (draft 2020-12); anything else is data.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})
_SCHEMA_VALUES = frozenset({
    "items", "prefixItems", "additionalProperties", "allOf", "anyOf", "oneOf", "not",
    "if", "then", "else", "contains", "propertyNames", "unevaluatedItems",
    "unevaluatedProperties",
})  # fmt: skip


def _const_as_enum(schema: Any) -> Any:
    """The schema with every ``{"const": v}`` written ``{"enum": [v]}``."""
    if isinstance(schema, list):
        return [_const_as_enum(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    rewritten: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "const":
            rewritten["enum"] = [value]
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            rewritten[key] = {name: _const_as_enum(item) for name, item in value.items()}
        elif key in _SCHEMA_VALUES:
            rewritten[key] = _const_as_enum(value)
        else:
            rewritten[key] = value
    return rewritten


def prepare_checks() -> None:
    """Compile the schema now (a few tens of milliseconds), not at the first refusal: a
    valid specification needs only msgspec's check (``shape``), but the compiled schema
    judges one it refuses, and compiling it then would stall that request's reactor."""
    _fast_check()


def _schema_errors(document: Any) -> list[Any]:
    """The schema's errors in ``document``, quickest first: msgspec's check of the shape
    (``shape``), the schema compiled to Python, and ``jsonschema`` for the messages."""
    if fits_shape(document):
        return []
    import fastjsonschema

    try:
        _fast_check()(document)
        return []
    except (fastjsonschema.JsonSchemaException, RecursionError):
        pass  # invalid, or too deep for the compiled checks: let jsonschema say why
    return sorted(
        _validator().iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]
    )


def parse_specification(
    document: str | bytes | bytearray | Mapping[str, Any],
    tick: Callable[[], None] | None = None,
) -> Specification:
    """Validate and convert a specification (JSON text or an already-parsed dict).

    Raises SpecificationError, whatever the input: any nesting depth, any
    string, any number; its messages are short and encodable as UTF-8.
    `tick` is called while the rules of `fitsKeywords` sources run (the
    merger's sign of life; see `pipeline.run_rules`).
    """
    if isinstance(document, str | bytes | bytearray):
        try:
            text, document = document, decode(document)
        except DocumentError as exc:
            raise SpecificationError(exc.errors) from None
        unsafe = text_problems(text, document)
    else:
        unsafe = problems(document)
    if unsafe:
        raise SpecificationError(unsafe)
    schema_errors = _schema_errors(document)
    errors = [f"{json_path(e.absolute_path)}: {_explain(e)}" for e in schema_errors]
    refused = [json_path(e.absolute_path) for e in schema_errors]
    builder = _Builder(tick)
    spec = builder.build(document)
    errors += [e for e in builder.errors if not _overlaps(e.split(": ", 1)[0], refused)]
    if errors or spec is None:
        raise SpecificationError([shorten(e) for e in errors] or ["$: invalid specification"])
    return spec


def _explain(error: Any) -> str:
    """jsonschema's message, except for names an object does not allow: each of those is
    named with the nearest name its own level allows (the schema has no patternProperties)."""
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = list(error.schema.get("properties", ()))
        unknown = [name for name in error.instance if name not in allowed]
        return sentences(not_allowed(unknown, allowed))
    return cast(str, error.message)


def _overlaps(path: str, refused: list[str]) -> bool:
    """True when the schema already reported a problem at, above or below `path`."""
    return any(
        other == path
        or other.startswith((path + ".", path + "["))
        or path.startswith((other + ".", other + "["))
        for other in refused
    )


class _Builder:
    """Builds the model; skips (without a message) parts the schema already refused."""

    def __init__(self, tick: Callable[[], None] | None = None) -> None:
        self.errors: list[str] = []
        self.tick = tick

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def build(self, doc: Any) -> Specification | None:
        try:
            sources = tuple(
                source
                for i, raw in enumerate(doc["sources"])
                if (source := self._guarded(self._source, raw, f"$.sources[{i}]")) is not None
            )
            target = doc["target"]
            target_source = None
            if "source" in target:
                target_source = self._file_source(target["source"], "$.target.source")
            file_id, prefix = target["fileId"], target.get("filePrefix", "")
            if len(prefix) + len(file_id) > _MAX_PRODUCT_STEM:
                self.error(
                    "$.target", f"filePrefix plus fileId exceed {_MAX_PRODUCT_STEM} characters"
                )
            self._check_unique_names(sources, target_source)
            receivers = tuple(
                OlasReceiver(
                    path=raw["path"],
                    host=raw.get("host", ""),
                    allow_symlink=raw.get("options", {}).get("allowSymlink", True),
                    manifest=raw.get("options", {}).get("manifest", True),
                )
                for raw in doc.get("receivers", ())
            )
            return Specification(
                id=doc["id"],
                file_id=file_id,
                file_prefix=prefix,
                sources=sources,
                target_source=target_source,
                receivers=receivers,
                keyword_dictionaries=tuple(doc.get("keywordDictionaries", ())),
            )
        except (KeyError, TypeError, AttributeError, IndexError):
            return None

    @staticmethod
    def _guarded(build: Any, raw: Any, path: str) -> Any:
        try:
            return build(raw, path)
        except (KeyError, TypeError, AttributeError, IndexError):
            return None  # reported by the schema

    def _check_unique_names(
        self, sources: tuple[Source, ...], target: FitsFileSource | None
    ) -> None:
        seen: dict[str, str] = {}
        named = [(f"$.sources[{i}].sourceName", s) for i, s in enumerate(sources)]
        if target is not None:
            named.append(("$.target.source.sourceName", target))
        for path, source in named:
            if source.source_name in seen:
                self.error(
                    path,
                    f"duplicate sourceName {source.source_name!r} "
                    f"(also at {seen[source.source_name]})",
                )
            seen.setdefault(source.source_name, path)

    def _source(self, raw: Mapping[str, Any], path: str) -> Source:
        if raw["type"] == "fitsFile":
            return self._file_source(raw, path)
        if raw["type"] != "fitsKeywords":
            raise KeyError(raw["type"])
        keywords = tuple(
            kw
            for i, item in enumerate(raw["keywords"])
            if (kw := self._keyword(item, f"{path}.keywords[{i}]")) is not None
        )
        rules = self._rules(raw, path)
        self._check_renames(keywords, rules, path)
        return FitsKeywordsSource(
            source_name=raw["sourceName"], keywords=keywords, keyword_rules=rules
        )

    def _check_renames(
        self, keywords: tuple[FitsKeyword, ...], rules: tuple[KeywordRule, ...] | None, path: str
    ) -> None:
        """The keywords of a `fitsKeywords` source are known now: run its rules over
        them, so a rename that cannot be written is refused at queueing time."""
        cards = [keyword.card for keyword in keywords if is_user_keyword(keyword.card)]
        try:
            refused = run_rules(cards, rules, self.tick).refused
        except RenameError as exc:
            self.error(f"{path}.keywordRules[{exc.rule}]", str(exc))
            return
        for refusal in refused:
            self.error(
                f"{path}.keywordRules[{refusal.rule}]",
                f"renaming {refusal.name!r} to {refusal.new_name!r}: {refusal.reason}",
            )

    def _file_source(self, raw: Mapping[str, Any], path: str) -> FitsFileSource:
        if raw["type"] != "fitsFile":
            raise KeyError(raw["type"])
        return FitsFileSource(
            source_name=raw["sourceName"],
            location=raw["location"],
            keyword_rules=self._rules(raw, path),
            alert_unmergeable=bool(raw.get("alertUnmergeable", True)),
        )

    def _keyword(self, raw: Mapping[str, Any], path: str) -> FitsKeyword | None:
        try:
            kind = raw["type"]
            if kind == "literalKeyword":
                cards = cards_from_records([raw["value"]], strict=True)
                card = cards[0]
                if card.kind is KeywordKind.COMMENTARY and card.name in ("END", "CONTINUE"):
                    raise CardError(f"a literal keyword cannot be {card.name!r}")
                self._check_not_structure(card.kind, card.name)
                return LiteralKeyword(record=raw["value"], card=card)
            value, comment = raw["value"], raw.get("comment")
            if kind == "valueKeyword":
                self._check_not_structure(KeywordKind.VALUE, raw["name"])
                card = render_keyword(KeywordKind.VALUE, raw["name"], value, comment)
                return ValueKeyword(raw["name"], value, comment, card=card)
            if kind == "esoKeyword":
                card = render_keyword(KeywordKind.ESO, raw["name"], value, comment)
                return EsoKeyword(raw["name"], value, comment, card=card)
        except CardError as exc:
            self.error(path, str(exc))
        except (KeyError, TypeError, AttributeError):
            pass  # reported by the schema
        return None

    @staticmethod
    def _check_not_structure(kind: KeywordKind, name: str) -> None:
        if kind is KeywordKind.VALUE and is_structure(name):
            raise CardError(f"structure keyword {name!r} cannot be set by a source")

    def _rules(self, raw: Mapping[str, Any], path: str) -> tuple[KeywordRule, ...] | None:
        if "keywordRules" not in raw:
            return None
        rules: list[KeywordRule] = []
        for i, rule in enumerate(raw["keywordRules"]):
            rule_path = f"{path}.keywordRules[{i}]"
            try:
                patterns = []
                for j, text in enumerate(rule["selectionPatterns"]):
                    try:
                        patterns.append(parse_pattern(text))
                    except RuleError as exc:
                        self.error(f"{rule_path}.selectionPatterns[{j}]", str(exc))
                if rule["type"] == "filter":
                    rules.append(FilterRule(tuple(patterns)))
                elif rule["type"] == "transform":
                    rules.append(self._transform(tuple(patterns), rule, rule_path))
            except (KeyError, TypeError, AttributeError, RuleError):
                pass  # reported by the schema
        return tuple(rules)

    def _transform(
        self, patterns: tuple[SelectionPattern, ...], rule: Mapping[str, Any], path: str
    ) -> TransformRule:
        try:
            regex = compile_regex(rule["regex"])
        except RuleError as exc:
            self.error(f"{path}.regex", str(exc))
            raise
        try:
            tokens = parse_format(rule["format"], regex.groups)
        except RuleError as exc:
            self.error(f"{path}.format", str(exc))
            raise
        return TransformRule(patterns, regex, rule["format"], tokens)
