"""Typed, immutable model of a Data Product Specification.

The server stores and schedules by it and the merger merges by it, so both see
one validated shape: frozen dataclasses built only by `parse_specification`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cards import Card
from .rules import KeywordRule


@dataclass(frozen=True)
class ValueKeyword:
    """`valueKeyword`: an 8-character FITS keyword with a JSON value."""

    name: str
    value: str | bool | int | float
    comment: str | None = None
    card: Card = field(default=None, repr=False, compare=False)  # type: ignore[assignment]


@dataclass(frozen=True)
class EsoKeyword:
    """`esoKeyword`: written as `HIERARCH ESO <name>`; `name` has no prefix."""

    name: str
    value: str | bool | int | float
    comment: str | None = None
    card: Card = field(default=None, repr=False, compare=False)  # type: ignore[assignment]


@dataclass(frozen=True)
class LiteralKeyword:
    """`literalKeyword`: one complete record, kind and name found by parsing it."""

    record: str
    card: Card = field(default=None, repr=False, compare=False)  # type: ignore[assignment]


FitsKeyword = ValueKeyword | EsoKeyword | LiteralKeyword


@dataclass(frozen=True)
class FitsKeywordsSource:
    """Keywords given in the specification itself (`fitsKeywords`)."""

    source_name: str
    keywords: tuple[FitsKeyword, ...]
    keyword_rules: tuple[KeywordRule, ...] | None = None


@dataclass(frozen=True)
class FitsFileSource:
    """An existing FITS file (`fitsFile`); `location` may be `host:/path`."""

    source_name: str
    location: str
    keyword_rules: tuple[KeywordRule, ...] | None = None
    alert_unmergeable: bool = True

    @property
    def is_remote(self) -> bool:
        """True for `host:/path` and `user@host:/path`, which need collecting first."""
        return is_remote_location(self.location)


Source = FitsKeywordsSource | FitsFileSource


@dataclass(frozen=True)
class OlasReceiver:
    """Release destination; `host` is "" when `path` is reachable locally."""

    path: str
    host: str = ""
    allow_symlink: bool = True
    manifest: bool = True
    """Write ``{fileId}.fits.json`` (sizes, checksums, sources) beside the product."""


@dataclass(frozen=True)
class Specification:
    """A parsed, validated Data Product Specification."""

    id: str
    file_id: str
    sources: tuple[Source, ...]
    file_prefix: str = ""
    target_source: FitsFileSource | None = None
    receivers: tuple[OlasReceiver, ...] = ()
    keyword_dictionaries: tuple[str, ...] = ()

    @property
    def archive_name(self) -> str:
        """`ARCFILE`: the name the product is delivered and archived under."""
        return f"{self.file_id}.fits"

    @property
    def product_name(self) -> str:
        """Default output file name (and `ORIGFILE`): `{filePrefix}{fileId}.fits`."""
        return f"{self.file_prefix}{self.file_id}.fits"

    def file_sources(self) -> tuple[FitsFileSource, ...]:
        """Every file to collect: the in-place target first, then file sources in order."""
        files = tuple(s for s in self.sources if isinstance(s, FitsFileSource))
        return ((self.target_source,) if self.target_source else ()) + files


def is_remote_location(location: str) -> bool:
    """`host:path` (no slash before the first colon) is remote; anything else local."""
    head, colon, _ = location.partition(":")
    return bool(colon) and bool(head) and "/" not in head
