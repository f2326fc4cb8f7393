"""The storage reserve: no stage starts while the workspace is nearly full.

Below ``storage.reserve`` (bytes, or a share of the workspace's file system;
default 5 %) a DAQ whose next stage would start waits instead, with the
Warning alert ``StorageLow`` saying how much is free and how much is kept.
While any DAQ waits, the space is looked at again every few seconds; when it
is back above the reserve, the alerts clear and the stages start by
themselves.  QueueDaq still accepts new DAQs (a specification is small) as
long as the store can commit.  A full disk found by a running stage is that
stage's failure; the reserve is what keeps a night from getting there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dpmd.daq.lifecycle import Daq, settle
from dpmd.logs import get_logger
from dpmd.model import AlertSeverity, StorageStatus
from dpmd.storage import StorageMonitor

log = get_logger(__name__)

STORAGE_LOW = "StorageLow"
RECHECK = 2.0
"""Seconds between two looks at the space while a DAQ waits for it."""


class StorageReserve:
    """Holds back stage runs while the workspace's free space is below ``storage.reserve``,
    with a ``StorageLow`` alert on each DAQ it holds, and lets them go when space returns."""

    def __init__(self, monitor: StorageMonitor, clock: IReactorTime,
                 resume: Callable[[Daq], None]) -> None:  # fmt: skip
        self._monitor = monitor
        self._clock = clock
        self._resume = resume
        self._waiting: dict[str, Daq] = {}
        self._recheck: IDelayedCall | None = None

    def admit(self, daq: Daq) -> Deferred[bool]:
        """True when the DAQ's stage may start now; else it waits, with ``StorageLow``."""
        return self._monitor.query().addCallback(self._decide, daq)

    def _decide(self, status: StorageStatus, daq: Daq) -> Deferred[bool] | bool:
        problem = self._monitor.low(status)
        if problem is None:
            if self._waiting.pop(daq.id, None) is not None:
                cleared = daq.clear_alerts((STORAGE_LOW,), "space above the reserve again")
                return cleared.addCallback(lambda _: True)
            return True
        first = daq.id not in self._waiting
        self._waiting[daq.id] = daq
        self._look_again_later()
        if first:
            log.warn("DAQ {daq_id} waits: {problem}", daq_id=daq.id, problem=problem)
            raised = daq.raise_alert(STORAGE_LOW, "workspace", AlertSeverity.Warning,
                                     f"waiting for space: {problem}")  # fmt: skip
            return raised.addCallback(lambda _: False)
        return False

    def forget(self, daq: Daq) -> None:
        """The DAQ no longer waits (aborted, finished)."""
        self._waiting.pop(daq.id, None)

    def _look_again_later(self) -> None:
        if self._recheck is None or not self._recheck.active():
            self._recheck = self._clock.callLater(RECHECK, self._look_again)

    def _look_again(self) -> None:
        self._recheck = None
        if not self._waiting:
            return
        settle(self._monitor.query().addCallback(self._space_back),
               "looking at the storage reserve")  # fmt: skip

    def _space_back(self, status: StorageStatus) -> Any:
        if self._monitor.low(status) is not None:
            self._look_again_later()
            return None
        for daq in list(self._waiting.values()):
            self._resume(daq)  # its stage is admitted again, which clears its alert
        return None
