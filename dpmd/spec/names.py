"""Keyword names: the three kinds, naming rules, structure and reserved names.

Shared by the record codec (`cards`), the rule grammar (`rules`) and the
merger, which must all agree on what a keyword may be called and which names
belong to the merger alone.
"""

from __future__ import annotations

import enum
import re

RECORD = 80
ESO_PREFIX = "HIERARCH ESO "
#: Longest ESO logical name: room is kept for " = " and a one-character value.
MAX_ESO_NAME = RECORD - len(ESO_PREFIX) - 4


class KeywordKind(enum.Enum):
    """The three kinds the keyword rules distinguish (their pattern letter)."""

    VALUE = "v"
    ESO = "e"
    COMMENTARY = "c"


class CardError(ValueError):
    """A keyword cannot be parsed, or cannot be represented as FITS records."""


_VALUE_NAME = re.compile(r"[A-Z0-9_-]{1,8}\Z")
_ESO_NAME = re.compile(r"[A-Z0-9_-]+(?: [A-Z0-9_-]+)*\Z")
#: Names whose records never carry a value: commentary keywords.
COMMENTARY_NAMES = frozenset({"COMMENT", "HISTORY", ""})
SPECIAL_NAMES = frozenset({"COMMENT", "HISTORY", "CONTINUE", "HIERARCH", "END"})

#: Keywords that describe the structure of an HDU. Copying one into another
#: header would corrupt it, so they are never merged (see docs/merge.md).
STRUCTURE_NAMES = frozenset(
    {
        "SIMPLE", "BITPIX", "NAXIS", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "GROUPS",
        "TFIELDS", "THEAP", "BSCALE", "BZERO", "BLANK", "EXTNAME", "EXTVER", "EXTLEVEL",
        "INHERIT", "END", "ZIMAGE", "ZSIMPLE", "ZEXTEND", "ZTENSION", "ZBITPIX", "ZPCOUNT",
        "ZGCOUNT", "ZCMPTYPE", "ZQUANTIZ", "ZDITHER0", "ZBLANK", "ZBLOCKED", "ZMASKCMP",
        "ZHECKSUM", "ZDATASUM", "ZTABLE",
    }
)  # fmt: skip
_STRUCTURE_INDEXED = re.compile(
    r"(?:NAXIS|TFORM|TBCOL|TTYPE|TUNIT|TDIM|TNULL|TSCAL|TZERO|TDISP|ZNAXIS|ZTILE|ZNAME|ZVAL"
    r"|ZFORM|ZCTYP)\d+\Z"
)
#: Keywords the merger writes itself; a source's values are overwritten.
RESERVED_NAMES = ("ARCFILE", "ORIGFILE", "DATE", "CHECKSUM", "DATASUM")


def is_structure(name: str) -> bool:
    """True for a structure keyword name (value-keyword namespace only)."""
    return name in STRUCTURE_NAMES or bool(_STRUCTURE_INDEXED.match(name))


def is_reserved(name: str) -> bool:
    return name in RESERVED_NAMES


def check_value_name(name: str) -> None:
    """Raise CardError unless `name` can be written as an 8-character keyword."""
    if not _VALUE_NAME.match(name):
        raise CardError(f"invalid keyword name {name!r}: 1 to 8 characters of A-Z 0-9 _ -")
    if name in SPECIAL_NAMES:
        raise CardError(f"{name!r} cannot be a value keyword")


def check_eso_name(name: str) -> None:
    """Raise CardError unless `name` is a valid ESO logical name (no prefix)."""
    if not _ESO_NAME.match(name):
        raise CardError(
            f"invalid ESO keyword name {name!r}: tokens of A-Z 0-9 _ - separated by one space"
        )
    if len(name) > MAX_ESO_NAME:
        raise CardError(f"ESO keyword name {name!r} is longer than {MAX_ESO_NAME} characters")
