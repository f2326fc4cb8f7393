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


class RecordTooLong(CardError):
    """Name and value together need more room than FITS records can give.

    Told apart from other card errors because, after a rename, it depends on
    the value in a source file: the merger then leaves the keyword out with an
    alert instead of failing the merge.
    """


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
#: LONGSTRN is written exactly when the product uses CONTINUE records.
RESERVED_NAMES = ("ARCFILE", "ORIGFILE", "DATE", "LONGSTRN", "CHECKSUM", "DATASUM")

#: Keywords that describe the data array of a primary HDU (FITS 4.0 sections 4.4.2.5,
#: 6 and 8): units and range of the pixel values, random-groups parameters and the
#: world coordinate system, `a` being an optional alternate-WCS letter. A source
#: whose primary array is not merged has them describe nothing in the product.
#: EQUINOX, RADESYS, EPOCH, MJD-OBS, DATE-OBS and OBSGEO-* are left alone: they
#: also qualify the pointing keywords (RA, DEC) of the observation.
_PRIMARY_DATA_NAMES = frozenset({"BUNIT", "DATAMIN", "DATAMAX", "RESTFREQ"})
_PRIMARY_DATA_PATTERN = re.compile(
    r"(?:PTYPE|PSCAL|PZERO)\d+"
    r"|(?:CRPIX|CRVAL|CTYPE|CDELT|CUNIT|CRDER|CSYER|CNAME|CPERI|CZPHS)\d+[A-Z]?"
    r"|CROTA\d+"
    r"|(?:PC|CD|PV|PS)\d+_\d+[A-Z]?"
    r"|(?:WCSAXES|WCSNAME|LONPOLE|LATPOLE|RESTFRQ|RESTWAV|SPECSYS|SSYSOBS|SSYSSRC"
    r"|VELOSYS|ZSOURCE|VELANGL)[A-Z]?"
)


def is_structure(name: str) -> bool:
    """True for a structure keyword name (value-keyword namespace only)."""
    return name in STRUCTURE_NAMES or bool(_STRUCTURE_INDEXED.match(name))


def is_reserved(name: str) -> bool:
    return name in RESERVED_NAMES


def describes_primary_data(name: str) -> bool:
    """True for a value keyword that describes a primary data array (not its structure)."""
    return name in _PRIMARY_DATA_NAMES or bool(_PRIMARY_DATA_PATTERN.fullmatch(name))


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
