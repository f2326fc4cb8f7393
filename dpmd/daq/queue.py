"""The queue: every unfinished DAQ in queue order (``Registry``), and which starts next
(``Scheduler``: a FIFO of ``Scheduled`` DAQs and a count of busy slots).

The registry is a plain dict, which keeps insertion order; DAQs are inserted
in the order they were queued (the intake hands them to the store in arrival
order, and the store answers in that order), so the queue order is never
re-sorted: adding, finding and removing a DAQ are O(1) whatever its length.

At most ``limits.daq`` DAQs are past ``Scheduled`` (collecting, merging,
releasing or aborting) at once.  A DAQ blocked by a failure keeps its slot:
it is unfinished work an operator is expected to retry or abort, and letting
later DAQs overtake it would hide the failure behind a growing backlog.
Every event costs O(1): nothing scans the queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dpmd.daq.lifecycle import Daq
from dpmd.model import DaqSubState


class Registry:
    """The unfinished DAQs by id, in queue order: who exists now, for every room."""

    def __init__(self) -> None:
        self._daqs: dict[str, Daq] = {}

    def add(self, daq: Daq) -> None:
        self._daqs[daq.id] = daq

    def remove(self, daq: Daq) -> None:
        self._daqs.pop(daq.id, None)

    def get(self, daq_id: str) -> Daq | None:
        return self._daqs.get(daq_id)

    def __contains__(self, daq_id: object) -> bool:
        return daq_id in self._daqs

    def __iter__(self) -> Iterator[Daq]:
        return iter(self._daqs.values())

    def __len__(self) -> int:
        return len(self._daqs)

    def ids(self) -> set[str]:
        return set(self._daqs)


class Scheduler:
    """Starts ``Scheduled`` DAQs in queue order while fewer than ``limits.daq`` hold a slot."""

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
