"""The schema's shape as msgspec structures: the quick first check of a specification.

``parse_specification`` asks ``fits_shape`` first: msgspec checks a
specification's structure, types, lengths and patterns in C, in a tenth of
the time of the schema compiled to Python, and nearly every specification a
server gets is valid.  Only a ``False`` goes on to the compiled schema, and
then to ``jsonschema``, which writes the messages: a refusal's wording and
JSON path stay the schema's.

The structures must be at least as strict as ``schema/dpspec.schema.json``
(a ``True`` here is taken as the schema's), never less; being stricter only
costs the slower check.  Optional members are ``UNSET`` by default, so that a
``null`` where the schema wants a string is refused, as the schema refuses
it.  ``tests/test_spec_shape.py`` holds the two to each other, on the
examples and on random variations of them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                    pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")]  # fmt: skip
_Printable = Annotated[str, msgspec.Meta(pattern=r"^[ -~]*$")]
_Value = str | bool | int | float
_STRICT: dict[str, Any] = {"tag_field": "type", "forbid_unknown_fields": True}


class _ValueKeyword(msgspec.Struct, tag="valueKeyword", **_STRICT):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9_-]{1,8}$")]
    value: _Value
    comment: _Printable | UnsetType = UNSET


class _EsoKeyword(msgspec.Struct, tag="esoKeyword", **_STRICT):
    name: Annotated[str, msgspec.Meta(max_length=63, pattern=r"^[A-Z0-9_-]+( [A-Z0-9_-]+)*$")]
    value: _Value
    comment: _Printable | UnsetType = UNSET


class _LiteralKeyword(msgspec.Struct, tag="literalKeyword", **_STRICT):
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=r"^[ -~]*$")]


class _Filter(msgspec.Struct, tag="filter", **_STRICT):
    selectionPatterns: list[str]


class _Transform(msgspec.Struct, tag="transform", **_STRICT):
    selectionPatterns: list[str]
    regex: Annotated[str, msgspec.Meta(min_length=1)]
    format: str


_Rules = list[_Filter | _Transform]


class _FitsKeywords(msgspec.Struct, tag="fitsKeywords", **_STRICT):
    sourceName: _Name
    keywords: list[_ValueKeyword | _EsoKeyword | _LiteralKeyword]
    keywordRules: _Rules | UnsetType = UNSET


class _FileMembers(msgspec.Struct, forbid_unknown_fields=True):
    """The members of a ``fitsFile`` source, but its ``type``."""

    sourceName: _Name
    location: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    keywordRules: _Rules | UnsetType = UNSET
    alertUnmergeable: bool | UnsetType = UNSET


class _FitsFile(_FileMembers, tag="fitsFile", tag_field="type"):
    pass


class _TargetSource(_FileMembers, kw_only=True):
    """``target.source``: a ``fitsFile`` source whose ``type`` must be given (a tagged
    structure outside a union would take it as optional)."""

    type: Literal["fitsFile"]


class _Options(msgspec.Struct, forbid_unknown_fields=True):
    allowSymlink: bool | UnsetType = UNSET
    manifest: bool | UnsetType = UNSET


class _Receiver(msgspec.Struct, forbid_unknown_fields=True):
    """A receiver: its ``type`` a member, as ``_TargetSource``'s (no union to tag)."""

    type: Literal["olasReceiver"]
    path: Annotated[str, msgspec.Meta(pattern="^/")]
    host: str | UnsetType = UNSET
    options: _Options | UnsetType = UNSET


class _Target(msgspec.Struct, forbid_unknown_fields=True):
    fileId: Annotated[str, msgspec.Meta(min_length=1, max_length=63,
                                        pattern=r"^[A-Za-z0-9_][-A-Za-z0-9_.:+]*$")]  # fmt: skip
    filePrefix: Annotated[str, msgspec.Meta(max_length=32, pattern=r"^[-a-zA-Z0-9_.]*$")] | (
        UnsetType) = UNSET
    source: _TargetSource | UnsetType = UNSET


class SpecificationShape(msgspec.Struct, forbid_unknown_fields=True):
    """A whole specification, as the schema's top level."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[!-~]+$")]
    sources: list[_FitsKeywords | _FitsFile]
    target: _Target
    keywordDictionaries: list[Annotated[str, msgspec.Meta(min_length=1)]] | UnsetType = UNSET
    receivers: list[_Receiver] | UnsetType = UNSET


def fits_shape(document: Any) -> bool:
    """True when the decoded ``document`` has the schema's shape (False: ask the schema)."""
    try:
        msgspec.convert(document, SpecificationShape)
    except (msgspec.ValidationError, RecursionError):
        return False
    return True
