"""The stages a DAQ goes through: collect, merge, release.

A stage is a function of a ``StageContext`` returning a Deferred.  It fails
with ``StageError`` for the problems an operator can fix (the manager turns
each into an Error alert keyed as the contract says), and it is idempotent:
it writes to temporary names and renames when done, so running it again from
its start, after a retry or a crash, is always safe.  Abort cancels the
stage's Deferred and stops its children.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore

from dpmd.blocking import RunBlocking
from dpmd.config import Config
from dpmd.daq.lifecycle import Daq
from dpmd.model import AlertSeverity
from dpmd.workers import ChildProcess, ProcessRunner


class StageError(Exception):
    """Problems that block the stage: one ``(key, description)`` per alert to raise."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(description for _, description in problems))
        self.problems = list(problems)


@dataclass
class StageContext:
    """What a stage may use: its DAQ, the DAQ's folder, the server's means."""

    daq: Daq
    directory: Path
    linked_dir: Path
    """Where products live that receivers reach by symbolic link (they never move)."""
    config: Config
    runner: ProcessRunner
    run_blocking: RunBlocking
    merge_slots: DeferredSemaphore
    transfer_slots: DeferredSemaphore
    clock: Any

    def spawn(self, kind: str, argv: Sequence[str], **options: Any) -> ChildProcess:
        """Start a child that belongs to this DAQ (so that an abort stops it)."""
        child = self.runner.spawn(kind, argv, **options)
        self.daq.children.append(child)
        child.wait().addCallback(lambda _: self.daq.children.remove(child))
        return child

    def set_progress(self, stage: str, done: int, total: int, unit: str) -> None:
        self.daq.progress = {"stage": stage, "done": done, "total": total, "unit": unit}

    def alert(
        self, category: str, key: str, severity: AlertSeverity, description: str
    ) -> Deferred[None]:
        return self.daq.raise_alert(category, key, severity, description)
