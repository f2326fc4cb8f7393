"""Collecting: make every source file of the specification available locally.

A local source is read where it is, never copied: the merger only reads it
and writes the product elsewhere.  A remote source (``host:/path``) is
fetched with rsync over ssh into the DAQ's ``sources/`` folder, several at
once within ``limits.transfer``.  Every file is then checked (present,
regular, readable, FITS) and its path, size and modification time are
recorded, so the internal status shows exactly what will be merged.

Each file's SHA-256 checksum (``dpmd.digest.SOURCE_ALGORITHM``) is computed
in a thread, where hashlib and file reads release the interpreter's lock, so
the reactor goes on; the sources of a DAQ are hashed side by side.  With it
the record keeps the file's kernel change time and inode: the merge stage
re-reads a file only when those say it may have changed (see
``dpmd.stages.merge.changed_sources``).  A file that changes while it is
being hashed is not collected (a retry hashes it again).

A file modified after the DAQ was queued may have been copied while still
being written: it raises the *SuspiciousSourceFileTimestamp* warning.  Every
problem is reported at once, one alert per source, so that a single retry
can fix them all.

A merge that failed for a source's sake (it changed since it was collected,
or the merger could not read it) names the sources to collect again
(``DaqRecord.recollect``); the retry brings the DAQ back here for those only.
A local one is checked and hashed again; a remote one is transferred again
from scratch (its old copy removed first, so that rsync's quick check cannot
keep a copy that was changed in place).  The others keep their records.  A
re-collected source's record counts its ``collections`` and keeps what the
earlier ones found (``superseded``: size, time and checksum).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, NamedTuple

from twisted.internet.defer import DeferredList, inlineCallbacks

from dpmd.digest import SOURCE_ALGORITHM, hash_file
from dpmd.durable import fsync_directory
from dpmd.locations import RemoteFile, split_location
from dpmd.model import AlertSeverity
from dpmd.spec import FitsFileSource
from dpmd.stages import Problem, StageError, StageHost
from dpmd.stages.transfer import (
    Meter,
    TransferFailed,
    part_name,
    remote_size,
    rsync_argv,
    run_with_retries,
)

FITS_SIGNATURE = b"SIMPLE  ="
COLLECTED = "collected"
"""A source's ``state`` once collected (``pending`` before: the entry QueueDaq made)."""
SUSPICIOUS = "SuspiciousSourceFileTimestamp"


class Unusable(ValueError):
    """A source that cannot be collected; ``terminal`` unless it may still come."""

    def __init__(self, reason: str, terminal: bool = True) -> None:
        super().__init__(reason)
        self.terminal = terminal


def inspect_file(source: FitsFileSource, path: Path) -> dict[str, Any]:
    """Check one local file (blocking); raise ``Unusable`` saying what is wrong."""
    name, where = source.source_name, f"'{path}'"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        # It may still be being written by the instrument: waiting can help.
        raise Unusable(f"source '{name}': file {where} does not exist", terminal=False) from None
    except OSError as error:
        raise Unusable(f"source '{name}': cannot read {where}: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise Unusable(f"source '{name}': {where} is not a regular file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(FITS_SIGNATURE))
    except OSError as error:
        raise Unusable(f"source '{name}': cannot read {where}: {error.strerror}") from None
    if head != FITS_SIGNATURE:
        raise Unusable(f"source '{name}': {where} is not a FITS file")
    return {
        "name": name,
        "location": source.location,
        "local_path": str(path),
        "state": COLLECTED,
        "bytes": info.st_size,
        "mtime": info.st_mtime,
    }


def fingerprint(info: os.stat_result) -> tuple[int, int, int, int]:
    """What changes whenever a file's content does: size, mtime, change time, inode."""
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


def checksum_file(source: FitsFileSource, path: Path, hashed_at: float) -> dict[str, Any]:
    """The checksum and kernel fingerprint to record with a collected source (blocking)."""
    name = source.source_name
    try:
        before = os.stat(path)
        size, checksum = hash_file(path, SOURCE_ALGORITHM)
        after = os.stat(path)
    except OSError as error:
        raise Unusable(f"source '{name}': cannot read '{path}': {error.strerror}",
                       terminal=False) from None  # fmt: skip
    if fingerprint(before) != fingerprint(after) or size != after.st_size:
        raise Unusable(f"source '{name}': '{path}' changed while its checksum was computed; "
                       "it may still be being written", terminal=False)  # fmt: skip
    return {
        SOURCE_ALGORITHM: checksum,
        "bytes": after.st_size,
        "mtime": after.st_mtime,
        "ctime_ns": after.st_ctime_ns,
        "inode": after.st_ino,
        "hashed_at": hashed_at,
    }


def prepare_copy(final: Path) -> None:
    """Let rsync resume on a complete earlier copy too (its quick check skips it)."""
    part = final.with_name(part_name(final.name))
    if final.exists() and not part.exists():
        os.rename(final, part)


def finish_copy(final: Path) -> None:
    os.replace(final.with_name(part_name(final.name)), final)
    fsync_directory(final.parent)


def forget_copy(final: Path) -> None:
    """Remove an earlier copy, complete or partial, so the next transfer is whole."""
    final.unlink(missing_ok=True)
    final.with_name(part_name(final.name)).unlink(missing_ok=True)


SUPERSEDED_FIELDS = ("bytes", "mtime", SOURCE_ALGORITHM, "hashed_at")


def superseding(earlier: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The record of a source collected again: it counts the collections and keeps
    what the earlier ones found."""
    found = {name: earlier.get(name) for name in SUPERSEDED_FIELDS}
    return {**record, "collections": int(earlier.get("collections", 1)) + 1,
            "superseded": [*earlier.get("superseded", ()), found]}  # fmt: skip


class Collected(NamedTuple):
    """What a collection found: every file source's record, in the specification's order,
    and, for the sources collected again, their checksums before and after."""

    sources: list[dict[str, Any]]
    recollected: dict[str, dict[str, Any]]


class Collection:
    """One run of the stage for one DAQ."""

    def __init__(self, host: StageHost, checksums: bool = True) -> None:
        self.host = host
        self.meters: dict[str, Meter] = {}
        self.checksums = checksums
        """Off only to measure what they cost (``bench/collect.py``)."""

    def show_progress(self) -> None:
        done = sum(meter.done for meter in self.meters.values())
        total = sum(meter.total for meter in self.meters.values())
        self.host.set_progress("collecting", done, total, "bytes")
        for name, meter in self.meters.items():
            self.host.set_source_progress(name, meter.done, meter.total)

    @inlineCallbacks
    def fetch(self, source: FitsFileSource, remote: RemoteFile, again: bool) -> Any:
        """rsync one remote file into ``sources/`` (whole when collected ``again``);
        fires with its local path."""
        host = self.host
        final = host.directory / "sources" / f"{source.source_name}.fits"
        yield host.run_blocking(forget_copy if again else prepare_copy, final)
        size = yield remote_size(host, remote)
        meter = self.meters[source.source_name] = Meter(0, size or 0, size is not None)
        argv = rsync_argv(
            host.config.transfer,
            remote.rsync_argument,
            str(final.with_name(part_name(final.name))),
        )
        try:
            yield run_with_retries(host, "rsync", argv, meter, self.show_progress)
        except TransferFailed as error:
            raise Unusable(
                f"source '{source.source_name}': cannot collect {source.location}: {error}",
                terminal=error.terminal,
            ) from None
        try:
            yield host.run_blocking(finish_copy, final)
        except OSError as error:
            raise Unusable(
                f"source '{source.source_name}': cannot keep the copy {final}: {error.strerror}",
                terminal=False,
            ) from None
        return final

    @inlineCallbacks
    def collect_one(self, source: FitsFileSource, again: bool = False) -> Any:
        where = split_location(source.location)
        if isinstance(where, RemoteFile):
            path = yield self.fetch(source, where, again)
        else:
            path = self.host.config.dataroot / where
        record = yield self.host.run_blocking(inspect_file, source, path)
        if self.checksums:
            checked = yield self.host.run_blocking(checksum_file, source, path,
                                                   self.host.clock.seconds())  # fmt: skip
            record.update(checked)
        return record


@inlineCallbacks
def collect(host: StageHost, checksums: bool = True) -> Any:
    """Collect every file source (the in-place target first), or only those a failed
    merge named; fires with ``Collected``."""
    collection = Collection(host, checksums)
    again = set(host.record.recollect)
    earlier = {entry["name"]: entry for entry in host.record.sources
               if entry["state"] == COLLECTED}  # fmt: skip
    every = host.specification.file_sources()
    sources = [source for source in every if not again or source.source_name in again]
    outcomes = yield DeferredList(
        [collection.collect_one(source, bool(again)) for source in sources], consumeErrors=True
    )
    records: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for source, (succeeded, outcome) in zip(sources, outcomes, strict=True):
        if succeeded:
            before = earlier.get(source.source_name)
            records.append(outcome if before is None else superseding(before, outcome))
        else:
            outcome.trap(Unusable)
            problems.append(Problem(source.source_name, str(outcome.value),
                                    outcome.value.terminal))  # fmt: skip
    queued_at = host.record.queued_at
    for record in records:
        if record["mtime"] > queued_at:
            yield host.alert(
                SUSPICIOUS,
                record["name"],
                AlertSeverity.Warning,
                f"source '{record['name']}': {record['local_path']} was modified after the DAQ "
                "was queued; it may have been copied while still being written",
            )
    if problems:
        raise StageError(problems)
    fresh = {record["name"]: record for record in records}
    recollected = {
        name: {"before": earlier[name].get(SOURCE_ALGORITHM), "after": record.get(SOURCE_ALGORITHM)}
        for name, record in fresh.items() if name in earlier
    }  # fmt: skip
    return Collected([fresh.get(source.source_name) or earlier[source.source_name]
                      for source in every], recollected)  # fmt: skip
