"""Plan a merge: resolve sources, read their headers, decide the product layout.

Everything that can fail before the first byte is written happens here, so a
dry run is simply "plan, then print". The plan is data: the writer executes it
without further decisions.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dpmd.spec import FitsFileSource, Specification
from dpmd.spec.cards import BLOCK

from .contributions import Alert, gather
from .errors import OutputError, SourceError, UsageError
from .fitsio import FitsFormatError, FitsLayout, scan
from .header import ProductHeader, build_header, reserved_cards, structure_cards
from .rules import STRUCTURE, Dropped

__all__ = ["Alert", "HduEntry", "Mode", "Piece", "Plan", "build_plan", "resolve_sources"]


class Mode(enum.Enum):
    """How the product is made: a new file, or the in-place target's header and extensions."""

    NEW_FILE = "new-file"
    IN_PLACE = "in-place"  # header overwritten in the target, extensions appended
    IN_PLACE_REWRITE = "in-place-rewrite"  # header grew: target rewritten and replaced
    TARGET_TO_OUTPUT = "target-to-output"  # in-place semantics, product written to -o


@dataclass(frozen=True)
class Piece:
    """A byte range of a source file that becomes part of the product."""

    source_name: str
    path: str
    offset: int
    length: int
    is_primary_data: bool = False


@dataclass(frozen=True)
class HduEntry:
    """One HDU of the planned product, for the dry-run listing."""

    index: int
    origin: str
    kind: str
    extname: str | None
    header_size: int
    data_size: int


@dataclass(frozen=True)
class Plan:
    """Everything the merge will write, decided before a byte is: the header, the pieces
    to copy, the HDUs and the alerts (what ``--dry-run`` prints)."""

    spec: Specification
    mode: Mode
    output: str
    header: ProductHeader
    pieces: tuple[Piece, ...]
    hdus: tuple[HduEntry, ...]
    alerts: tuple[Alert, ...]
    target: FitsLayout | None = None
    #: Local path of every file source, by sourceName.
    paths: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Cards of the sources that do not reach the product: (sourceName, why).
    dropped: tuple[tuple[str, Dropped], ...] = ()

    @property
    def size(self) -> int:
        return self.header.size + sum(piece.length for piece in self.pieces)


def resolve_sources(spec: Specification, mapping: Mapping[str, str], root: str) -> dict[str, str]:
    """Local path of every file source (target included), by sourceName.

    The --resolve map comes first; otherwise a local location is used as is
    (relative to `root`); a remote `host:/path` without a mapping is an error.
    """
    names = {source.source_name for source in spec.file_sources()}
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise UsageError(f"--resolve names no file source of the specification: {unknown}")
    paths = {}
    for source in spec.file_sources():
        location = mapping.get(source.source_name)
        if location is None:
            if source.is_remote:
                raise SourceError(
                    f"source {source.source_name!r} is remote ({source.location}); pass --resolve "
                    "with the local path of the collected copy"
                )
            location = source.location
        paths[source.source_name] = os.path.abspath(os.path.join(root, location))
    return paths


def _scan(source: FitsFileSource, path: str, tick: Callable[[], None] | None) -> FitsLayout:
    try:
        return scan(path, tick)
    except FileNotFoundError:
        raise SourceError(f"source {source.source_name!r}: {path} does not exist") from None
    except OSError as exc:
        raise SourceError(
            f"source {source.source_name!r}: cannot read {path}: {exc.strerror}"
        ) from None
    except FitsFormatError as exc:
        raise SourceError(
            f"source {source.source_name!r}: {path} is not valid FITS: {exc}"
        ) from None


def build_plan(
    spec: Specification,
    paths: Mapping[str, str],
    output: str | None,
    root: str,
    date: str,
    tick: Callable[[], None] | None = None,
) -> Plan:
    """Read every source header and compute the product; nothing is written.

    `tick` is called from the loops over headers, HDUs and keywords (a sign of life).
    """
    layouts = {s.source_name: _scan(s, paths[s.source_name], tick) for s in spec.file_sources()}
    keywords = gather(spec, layouts, tick)
    target = spec.target_source
    structure, unused = structure_cards(keywords.target_cards, target.source_name if target else "")
    dropped = list(keywords.dropped)
    if target is not None and keywords.target_cards is not None:
        # The target's unused structure cards join its other dropped cards, in header order.
        name, position = target.source_name, {id(c): i for i, c in enumerate(keywords.target_cards)}
        own = [entry for source, entry in dropped if source == name]
        own += [Dropped(card, STRUCTURE) for card in unused]
        own.sort(key=lambda entry: position[id(entry.card)])
        dropped = [(name, entry) for entry in own] + [e for e in dropped if e[0] != name]
    reserved = reserved_cards(spec.archive_name, spec.product_name, date)
    alerts = list(keywords.alerts)
    pieces: list[Piece] = []
    target_layout = layouts[target.source_name] if target else None
    if target is None or target_layout is None:
        header = build_header(structure, reserved, keywords.merged)
        mode, path = Mode.NEW_FILE, output or os.path.join(root, spec.product_name)
        hdus = [HduEntry(0, "(new)", "PRIMARY", None, header.size, 0)]
    else:
        old_blocks = target_layout.primary.header_size // BLOCK
        header = build_header(structure, reserved, keywords.merged, min_blocks=old_blocks)
        resized = header.blocks > old_blocks
        if output:
            mode, path = Mode.TARGET_TO_OUTPUT, output
        else:
            path = target_layout.path
            mode = Mode.IN_PLACE_REWRITE if resized else Mode.IN_PLACE
        if resized:
            alerts.append(
                Alert(
                    "PrimaryHduResized",
                    target.source_name,
                    "Info",
                    f"primary header of {target.source_name!r} grows from {old_blocks} to "
                    f"{header.blocks} blocks of {BLOCK} bytes"
                    + ("" if output else "; the target file is rewritten"),
                )
            )
        primary = target_layout.primary
        hdus = [HduEntry(0, target.source_name, "PRIMARY", None, header.size, primary.data_size)]
        if primary.data_span:
            pieces.append(
                Piece(
                    target.source_name,
                    target_layout.path,
                    primary.data_offset,
                    primary.data_span,
                    is_primary_data=True,
                )
            )
        pieces += _extension_pieces(target.source_name, target_layout, hdus)
    for source in spec.sources:
        if isinstance(source, FitsFileSource):
            pieces += _extension_pieces(source.source_name, layouts[source.source_name], hdus)
    path = os.path.abspath(path)
    _check_output(path, mode, layouts, output is not None)
    return Plan(
        spec,
        mode,
        path,
        header,
        tuple(pieces),
        tuple(hdus),
        tuple(alerts),
        target_layout,
        dict(paths),
        tuple(dropped),
    )


def _extension_pieces(name: str, layout: FitsLayout, hdus: list[HduEntry]) -> list[Piece]:
    for hdu in layout.extensions:
        hdus.append(
            HduEntry(
                len(hdus), name, hdu.xtension or "?", hdu.extname, hdu.header_size, hdu.data_size
            )
        )
    offset, length = layout.extensions_range
    return [Piece(name, layout.path, offset, length)] if length else []


def _check_output(path: str, mode: Mode, layouts: Mapping[str, FitsLayout], explicit: bool) -> None:
    """Refuse to replace a source file with the product (only the in-place target may change)."""
    if mode in (Mode.IN_PLACE, Mode.IN_PLACE_REWRITE) or not os.path.exists(path):
        return
    for name, layout in layouts.items():
        try:
            same = os.path.samefile(path, layout.path)
        except OSError:
            continue
        if same:
            error = UsageError if explicit else OutputError
            raise error(f"output {path} is the file of source {name!r}; refusing to overwrite it")
