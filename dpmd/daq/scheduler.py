"""Which DAQ starts next: a FIFO of ``Scheduled`` DAQs and a count of busy slots.

At most ``limits.daq`` DAQs are past ``Scheduled`` (collecting, merging,
releasing or aborting) at once.  A DAQ blocked by a failure keeps its slot:
it is unfinished work an operator is expected to retry or abort, and letting
later DAQs overtake it would hide the failure behind a growing backlog.
Every event costs O(1): nothing scans the queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dpmd.daq.lifecycle import Daq
from dpmd.model import DaqSubState


class Scheduler:
    def __init__(self, limit: int, clock: IReactorTime, start: Callable[[Daq], None]) -> None:
        self._limit = limit
        self._clock = clock
        self._start = start
        self._waiting: deque[Daq] = deque()
        self._busy = 0
        self._wake_call: IDelayedCall | None = None
        self.stopped = False

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def enqueue(self, daq: Daq) -> None:
        """A ``Scheduled`` DAQ joins the end of the queue."""
        self._waiting.append(daq)
        self.wake()

    def occupy(self, daq: Daq) -> None:
        """``daq`` takes a slot (it starts, or it was found past Scheduled at start-up)."""
        if not daq.holds_slot:
            daq.holds_slot = True
            self._busy += 1

    def release(self, daq: Daq) -> None:
        if daq.holds_slot:
            daq.holds_slot = False
            self._busy -= 1
            self.wake()

    def wake(self) -> None:
        """Start what may start, on a later reactor turn (after the current reply).

        With every slot busy nothing may: no turn is spent (a queue being filled
        while the slots are taken costs nothing per DAQ)."""
        if self._wake_call is None and not self.stopped and self._busy < self._limit:
            self._wake_call = self._clock.callLater(0, self._run)

    def stop(self) -> None:
        self.stopped = True
        if self._wake_call is not None and self._wake_call.active():
            self._wake_call.cancel()
        self._wake_call = None

    def _run(self) -> None:
        self._wake_call = None
        while self._busy < self._limit and self._waiting and not self.stopped:
            daq = self._waiting.popleft()
            # Aborted (or otherwise moved on) while it waited: it is simply skipped.
            if daq.substate is DaqSubState.Scheduled and not daq.aborting:
                self.occupy(daq)
                self._start(daq)
