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
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.python.failure import Failure

from dpmd.durable import write_durably
from dpmd.logs import get_logger
from dpmd.model import AlertSeverity
from dpmd.stages import StageError, StageHost
from dpmd.workers import python_command
from dpmd.workspace import SPECIFICATION

log = get_logger(__name__)

MERGE_KEY = "merge"
RESOLVE_MAP = "resolve.json"
MERGE_LOG = Path("logs") / "merge.log"
MERGER_TEMPORARY_GLOB = ".*.dpmd-tmp"

EXIT_MEANINGS = {
    1: "the merge failed",
    2: "the merger was called with a bad command line",
    3: "the specification is invalid",
    4: "a source file is missing, unreadable or not FITS",
    5: "the product cannot be written (disk full or no permission)",
}

MERGER_ALERTS = {"UnmergedData", "PrimaryHduResized"}


def prepare_merge(directory: Path, resolve: dict[str, str], product: Path) -> None:
    """Remove what an interrupted merge left and write the resolve map (blocking)."""
    for leftover in directory.glob(MERGER_TEMPORARY_GLOB):
        leftover.unlink(missing_ok=True)
    product.unlink(missing_ok=True)
    write_durably(directory / RESOLVE_MAP, json.dumps(resolve, indent=1).encode())


def last_log_line(path: Path) -> str:
    """The last non-blank line of the merger's log (blocking), for the alert text."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 4096))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class MergerOutput:
    """Interprets the merger's ``--json`` lines for one run."""

    def __init__(self, host: StageHost) -> None:
        self._host = host
        self.product: str | None = None
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
        elif kind == "result":
            self.product = str(message["path"])


@inlineCallbacks
def merge(host: StageHost) -> Any:
    """Run the merger; fires with the product's path."""
    directory = host.directory
    specification = host.specification
    product = directory / specification.product_name
    resolve = {entry["name"]: entry["local_path"] for entry in host.record.sources}
    yield host.run_blocking(prepare_merge, directory, resolve, product)
    host.set_progress("waiting for a merge slot", 0, 0, "bytes")
    yield host.merge_slots.acquire()
    try:
        output = MergerOutput(host)
        argv = python_command(
            "dpmd.merge",
            "--json",
            "--resolve", str(directory / RESOLVE_MAP),
            "--root", str(host.config.dataroot),
            "-o", str(product),
            str(directory / SPECIFICATION),
        )  # fmt: skip
        child = host.spawn(
            "merge", argv, on_line=output.line_received, stderr_path=directory / MERGE_LOG
        )
        status = yield child.wait()
    finally:
        host.merge_slots.release()
    if output.unrecorded is not None:
        output.unrecorded.raiseException()
    if status.ok and output.product:
        return output.product
    if status.ok:
        reason = "it reported no product"
    elif status.signal is not None:
        reason = "it was stopped"
    else:
        reason = EXIT_MEANINGS.get(status.code, "the merge failed")
    detail = yield host.run_blocking(last_log_line, directory / MERGE_LOG)
    description = f"dpmd-merge ended with {status.describe()}: {reason}"
    if detail:
        description += f" ({detail})"
    raise StageError([(MERGE_KEY, description + "; see logs/merge.log")])

