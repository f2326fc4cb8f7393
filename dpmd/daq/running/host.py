"""What a running stage may use of its DAQ and of the server (``dpmd.stages.StageHost``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime

from dpmd.blocking import RunBlocking
from dpmd.config import Config
from dpmd.daq.lifecycle import Daq
from dpmd.daq.persist.journal import Journal
from dpmd.daq.persist.store import Provenance
from dpmd.daq.running.watchdog import STAGE_STALLED, Watchdog
from dpmd.model import AlertSeverity
from dpmd.record import DaqRecord
from dpmd.spec import Specification
from dpmd.workers import ChildProcess, ProcessRunner


@dataclass
class Means:
    """The server's means that every stage shares."""

    config: Config
    clock: IReactorTime
    runner: ProcessRunner
    run_blocking: RunBlocking
    merge_slots: DeferredSemaphore
    transfer_slots: DeferredSemaphore


class StageContext:
    """A ``StageHost`` for one run of one stage of one DAQ."""

    def __init__(self, daq: Daq, means: Means, directory: Path, linked_dir: Path,
                 stage: str, journal: Journal) -> None:  # fmt: skip
        self._daq = daq
        self._journal = journal
        self._means = means
        self.directory = directory
        self.linked_dir = linked_dir
        self._stage = stage
        self._spawned: list[ChildProcess] = []

    @property
    def daq_id(self) -> str:
        return self._daq.id

    @property
    def specification(self) -> Specification:
        specification = self._daq.specification
        assert specification is not None, "a stage runs only once its specification is loaded"
        return specification

    @property
    def record(self) -> DaqRecord:
        return self._daq.newest

    @property
    def config(self) -> Config:
        return self._means.config

    @property
    def clock(self) -> IReactorTime:
        return self._means.clock

    @property
    def run_blocking(self) -> RunBlocking:
        return self._means.run_blocking

    @property
    def merge_slots(self) -> DeferredSemaphore:
        return self._means.merge_slots

    @property
    def transfer_slots(self) -> DeferredSemaphore:
        return self._means.transfer_slots

    def spawn(self, kind: str, argv: Sequence[str], **options: Any) -> ChildProcess:
        """Start a child of the DAQ, under the stall watchdog."""
        child = self._means.runner.spawn(kind, argv, **options)
        daq = self._daq
        daq.children = (*daq.children, child)

        def ended(_: Any) -> None:
            daq.children = tuple(other for other in daq.children if other is not child)

        child.wait().addCallback(ended)
        self._spawned.append(child)
        config = self._means.config
        input_bytes = sum(int(source.get("bytes") or 0) for source in self.record.sources)
        stall, kill = config.watchdog.budgets(input_bytes)
        Watchdog(child, self._means.clock, stall, kill, config.shutdown_timeout,
                 self._stalled, self._resumed)  # fmt: skip
        return child

    @property
    def peak_rss(self) -> int | None:
        """The most memory any child of this run held (bytes), or None if none was seen."""
        return max((child.peak_rss for child in self._spawned if child.peak_rss is not None),
                   default=None)  # fmt: skip

    def keep_provenance(self, cards: str) -> Deferred[None]:
        return self._journal.commit(Provenance(self._daq.id, cards)).addCallback(lambda _: None)

    def _stalled(self, description: str) -> Deferred[None]:
        return self._daq.raise_alert(STAGE_STALLED, self._stage, AlertSeverity.Warning,
                                     f"{self._stage}: {description}")  # fmt: skip

    def _resumed(self) -> Deferred[None]:
        return self._daq.clear_alerts((STAGE_STALLED,), f"{self._stage}: progress again")

    def set_progress(self, stage: str, done: int, total: int, unit: str) -> None:
        self._daq.progress = {"stage": stage, "done": done, "total": total, "unit": unit}

    def set_source_progress(self, name: str, done: int, total: int) -> None:
        self._daq.source_progress[name] = (done, total)

    def note(self, message: str, **changes: Any) -> Deferred[None]:
        return self._daq.change(message, **changes)

    def alert(self, category: str, key: str, severity: AlertSeverity,
              description: str) -> Deferred[None]:  # fmt: skip
        return self._daq.raise_alert(category, key, severity, description)
