"""The Data Product Specification: JSON Schema, typed model and parser.

Shared by the server (validation at QueueDaq time, collection of file sources)
and by the merger. Nothing here does I/O beyond reading the shipped schema.
"""

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
    is_remote_location,
)
from .names import KeywordKind
from .parse import (
    SCHEMA_PATH,
    SpecificationError,
    load_schema,
    parse_specification,
    prepare_checks,
)
from .rules import FilterRule, KeywordRule, SelectionPattern, TransformRule

__all__ = [
    "SCHEMA_PATH",
    "EsoKeyword",
    "FilterRule",
    "FitsFileSource",
    "FitsKeyword",
    "FitsKeywordsSource",
    "KeywordKind",
    "KeywordRule",
    "LiteralKeyword",
    "OlasReceiver",
    "SelectionPattern",
    "Source",
    "Specification",
    "SpecificationError",
    "TransformRule",
    "ValueKeyword",
    "is_remote_location",
    "load_schema",
    "parse_specification",
    "prepare_checks",
]
