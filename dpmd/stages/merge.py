"""Merging: run ``dpmd-merge`` as a child process to build the data product.

The stored specification is never rewritten: the merger gets a resolve map
(source name → the local path collection recorded) and writes the product
into the DAQ's folder with ``-o``.  An in-place target is read, not changed,
so running the merge again after a failure or a crash starts from the same
inputs and gives the same product.  The merger's JSON lines on stdout feed
the progress and the DAQ's alerts; its log goes to ``logs/merge.log``.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, NamedTuple

from twisted.internet.defer import inlineCallbacks
from twisted.python.failure import Failure

from dpmd.digest import SOURCE_ALGORITHM, hash_file
from dpmd.durable import write_durably
from dpmd.logs import get_logger
from dpmd.model import AlertSeverity
from dpmd.stages import Problem, StageError, StageHost
from dpmd.workers import python_command
from dpmd.workspace import SPECIFICATION

log = get_logger(__name__)

MERGE_KEY = "merge"
RESOLVE_MAP = "resolve.json"
PROVENANCE = "provenance.json"
MERGE_LOG = Path("logs") / "merge.log"
MERGER_TEMPORARY_GLOB = ".*.dpmd-tmp"

EXIT_MEANINGS = {
    1: "the merge failed",
    2: "the merger was called with a bad command line",
    3: "the specification is invalid",
    4: "a source file is missing, unreadable or not FITS",
    5: "the product cannot be written (disk full or no permission)",
    126: "its interpreter cannot be run",
    127: "its interpreter was not found",
}
TERMINAL_EXITS = {2, 3, 4, 126, 127}
"""Merger exits that a retry cannot mend: the specification, a source or the
installation must change first."""
SOURCE_EXIT = 4
"""The merger cannot read a source: what was collected is bad, so a retry collects
every source again (the merger does not say which one it could not read)."""

MERGER_ALERTS = {"UnmergedData", "PrimaryHduResized"}


SOURCE_CHANGED = "SourceChanged"


RACY_SECONDS = 2.0
"""A file changed this close to (or after) the moment its checksum was taken may have been
changed again within the same tick of the kernel's clock: its change time proves nothing,
so its content is read again (git's "racily clean" rule)."""


def changed_sources(sources: tuple[dict[str, Any], ...]) -> list[Problem]:
    """Sources that are not what collection recorded and hashed (blocking).

    The product must be made of what was collected and checked: a file that
    changed since (an instrument still writing, a file replaced) is refused,
    naming it, before the merge reads it.  Size and modification time are
    compared first; then the checksum — but a file is read again only when the
    kernel says it may have changed: its change time (which no one can set
    back, unlike the modification time) or its inode differ from collection's,
    or it was changed racily close to its hashing.  Otherwise the content is
    the one that was hashed, and the check costs one ``stat``.  A record of an
    earlier dpmd, without a checksum, is checked by size and time only.
    """
    problems = []
    for source in sources:
        path = source["local_path"]
        change: str | None
        try:
            info = os.stat(path)
            now = (info.st_size, info.st_mtime)
            if now == (source["bytes"], source["mtime"]):
                change = _content_change(source, path, info)
            else:
                change = (f"{source['bytes']} bytes modified at {source['mtime']} when "
                          f"collected, now {now[0]} bytes modified at {now[1]}")  # fmt: skip
        except OSError as error:
            change = f"it can no longer be read ({error.strerror})"
        if change is None:
            continue
        problems.append(Problem(
            source["name"], f"source '{source['name']}': {path} changed since it was collected: "
            f"{change}; no product is made of it. Put the right file in place and call "
            "RetryMergeDaq: the retry collects it again (or AbortDaq)",
            terminal=False, category=SOURCE_CHANGED))  # fmt: skip
    return problems


def _content_change(source: dict[str, Any], path: str, info: os.stat_result) -> str | None:
    """How the content differs from the checksum collection took, or None (blocking)."""
    recorded = source.get(SOURCE_ALGORITHM)
    if recorded is None:
        return None  # an earlier dpmd's record: size and time are all there is
    untouched = (info.st_ctime_ns, info.st_ino) == (source.get("ctime_ns"), source.get("inode"))
    racy = info.st_ctime_ns / 1e9 >= float(source.get("hashed_at") or 0) - RACY_SECONDS
    if untouched and not racy:
        return None
    _, found = hash_file(path, SOURCE_ALGORITHM)
    if found == recorded:
        return None
    return (f"the same size and modification time, but its {SOURCE_ALGORITHM} checksum is now "
            f"{found[:16]}…, not {recorded[:16]}… as collected")  # fmt: skip


def provenance_cards(path: Path) -> str:
    """The product header's provenance the merger wrote, as the JSON array to keep (blocking)."""
    with open(path, "rb") as handle:
        document = json.load(handle)
    return json.dumps(document["cards"], separators=(",", ":"))


def prepare_merge(directory: Path, resolve: dict[str, str], product: Path) -> None:
    """Remove what an interrupted merge left and write the resolve map (blocking)."""
    for leftover in directory.glob(MERGER_TEMPORARY_GLOB):
        leftover.unlink(missing_ok=True)
    product.unlink(missing_ok=True)
    (directory / PROVENANCE).unlink(missing_ok=True)
    write_durably(directory / RESOLVE_MAP, json.dumps(resolve, indent=1).encode())


def log_size(path: Path) -> int:
    """Where this run's part of the (appended) merger log begins (blocking)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def this_runs_log(path: Path, start: int) -> list[str]:
    """The non-blank lines this run of the merger logged, at most its last 4 KiB (blocking)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(start, handle.tell() - 4096))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in tail.splitlines() if line.strip()]


class Merged(NamedTuple):
    """What a merge made: the product's path and size."""

    path: str
    size: int


class MergerOutput:
    """Interprets the merger's ``--json`` lines for one run."""

    def __init__(self, host: StageHost) -> None:
        self._host = host
        self.product: str | None = None
        self.size = 0
        self.peak_rss: int | None = None
        """The merger's own account of its peak memory (``ru_maxrss``), when it gave one."""
        self.unrecorded: Failure | None = None
        """The first alert the store could not record: the stage fails with it."""

    def _not_recorded(self, failure: Failure) -> None:
        if self.unrecorded is None:
            self.unrecorded = failure

    def line_received(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            kind = message["type"]
        except (ValueError, KeyError, TypeError):
            log.warn("unexpected merger output: {line!r}", line=line[:200])
            return
        if kind == "progress":
            self._host.set_progress(
                str(message.get("stage", "merging")),
                int(message.get("done", 0)),
                int(message.get("total", 0)),
                str(message.get("unit", "bytes")),
            )
        elif kind == "alert" and message.get("category") in MERGER_ALERTS:
            self._host.alert(
                message["category"],
                str(message.get("key", "")),
                AlertSeverity(message.get("severity", "Warning")),
                str(message.get("description", "")),
            ).addErrback(self._not_recorded)
        elif kind in ("provenance", "heartbeat"):
            pass  # the provenance is read from its file; a heartbeat only says "alive"
        elif kind == "result":
            self.product = str(message["path"])
            self.size = int(message.get("size", 0))
            peak = message.get("peak_rss_bytes")
            self.peak_rss = peak if isinstance(peak, int) and not isinstance(peak, bool) else None


@inlineCallbacks
def merge(host: StageHost) -> Any:
    """Run the merger; fires with the product's path."""
    directory = host.directory
    specification = host.specification
    product = directory / specification.product_name
    resolve = {entry["name"]: entry["local_path"] for entry in host.record.sources}
    yield host.run_blocking(prepare_merge, directory, resolve, product)
    log_start = yield host.run_blocking(log_size, directory / MERGE_LOG)
    slots = host.merge_slots
    if not slots.tokens:
        host.set_progress(f"waiting for a merge slot ({slots.limit} of limits.merge = "
                          f"{slots.limit} in use)", 0, 0, "files")  # fmt: skip
    yield slots.acquire()
    try:
        # Checked last thing before the merger reads them (after any wait for a slot).
        host.set_progress("checking the sources", 0, len(host.record.sources), "files")
        changed = yield host.run_blocking(changed_sources, host.record.sources)
        if changed:
            raise StageError(changed, recollect=[problem.key for problem in changed])
        output = MergerOutput(host)
        argv = python_command(
            host.config.python,
            "dpmd.merge",
            "--json",
            "--resolve", str(directory / RESOLVE_MAP),
            "--root", str(host.config.dataroot),
            "-o", str(product),
            "--provenance", str(directory / PROVENANCE),
            str(directory / SPECIFICATION),
        )  # fmt: skip
        child = host.spawn(
            "merge", argv, on_line=output.line_received, stderr_path=directory / MERGE_LOG
        )
        status = yield child.wait()
        child.note_peak(output.peak_rss)
    finally:
        slots.release()
    if output.unrecorded is not None:
        output.unrecorded.raiseException()
    if status.ok and output.product:
        cards = yield host.run_blocking(provenance_cards, directory / PROVENANCE)
        yield host.keep_provenance(cards)
        return Merged(output.product, output.size)
    if status.ok:
        reason = "it reported no product"
    elif child.stalled_for is not None:
        reason = child.describe_end()
    elif status.signal is not None:
        reason = "it was stopped"
    else:
        reason = EXIT_MEANINGS.get(status.code, "the merge failed")
    lines = yield host.run_blocking(this_runs_log, directory / MERGE_LOG, log_start)
    description = f"dpmd-merge ended with {status.describe()}: {reason}"
    if any(line.startswith("Traceback") for line in lines):
        # A crash, not a verdict: its traceback goes to the log, under an incident id.
        incident = uuid.uuid4().hex[:12]
        log.error("DAQ {daq_id}: dpmd-merge crashed (incident {incident}):\n{traceback}",
                  daq_id=host.daq_id, incident=incident, traceback="\n".join(lines))  # fmt: skip
        description = f"dpmd-merge failed unexpectedly (incident {incident})"
    elif lines:
        description += f" ({lines[-1]})"
    description += "; see logs/merge.log"
    recollect: list[str] = []
    if status.code == SOURCE_EXIT:
        recollect = [source["name"] for source in host.record.sources]
        description += "; fix the source, then RetryMergeDaq collects the sources again"
    terminal = status.code in TERMINAL_EXITS
    raise StageError([Problem(MERGE_KEY, description, terminal)], recollect)

