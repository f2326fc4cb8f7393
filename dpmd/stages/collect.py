"""Collecting: make every source file of the specification available locally.

A local source is read where it is, never copied: the merger only reads it
and writes the product elsewhere.  Collection checks that each file is a
readable FITS file and records its path, size and modification time, so the
internal status shows exactly what will be merged.  Every problem is
reported at once, one alert per source, so a single retry can fix them all.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

from dpmd.spec import FitsFileSource
from dpmd.stages import StageContext, StageError

FITS_SIGNATURE = b"SIMPLE  ="


def local_path(location: str, dataroot: Path) -> Path:
    """A local ``location`` is absolute or relative to ``dataroot``."""
    return dataroot / location


def inspect_local_source(source: FitsFileSource, path: Path) -> dict[str, Any]:
    """Check one local file (blocking); raise ``ValueError`` saying what is wrong."""
    name, where = source.source_name, f"'{path}'"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"source '{name}': file {where} does not exist") from None
    except OSError as error:
        raise ValueError(f"source '{name}': cannot read {where}: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"source '{name}': {where} is not a regular file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(FITS_SIGNATURE))
    except OSError as error:
        raise ValueError(f"source '{name}': cannot read {where}: {error.strerror}") from None
    if head != FITS_SIGNATURE:
        raise ValueError(f"source '{name}': {where} is not a FITS file")
    return {
        "name": name,
        "location": source.location,
        "local_path": str(path),
        "state": "collected",
        "bytes": info.st_size,
        "mtime": info.st_mtime,
    }


def _check_all(sources: list[tuple[FitsFileSource, Path | None]]) -> list[dict[str, Any]]:
    collected: list[dict[str, Any]] = []
    problems: list[tuple[str, str]] = []
    for source, path in sources:
        if path is None:
            problems.append(
                (
                    source.source_name,
                    f"source '{source.source_name}': remote location '{source.location}' "
                    "cannot be collected: remote collection is not available in this dpmd",
                )
            )
            continue
        try:
            collected.append(inspect_local_source(source, path))
        except ValueError as error:
            problems.append((source.source_name, str(error)))
    if problems:
        raise StageError(problems)
    return collected


def collect(context: StageContext) -> Deferred[list[dict[str, Any]]]:
    """Collect every file source (the in-place target first); fires with their records."""
    specification = context.daq.specification
    dataroot = context.config.dataroot
    sources = [
        (source, None if source.is_remote else local_path(source.location, dataroot))
        for source in specification.file_sources()
    ]
    total = len(sources)
    context.set_progress("collecting", 0, total, "files")

    def done(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        context.set_progress("collecting", total, total, "files")
        return records

    return context.run_blocking(_check_all, sources).addCallback(done)
