"""The scheduler: FIFO of Scheduled DAQs, at most ``limits.daq`` busy, O(1) per event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dpmd.daq.queue import Scheduler
from dpmd.model import DaqSubState


@dataclass
class Waiting:
    """What the scheduler reads of a DAQ."""

    name: str
    substate: DaqSubState = DaqSubState.Scheduled
    aborting: bool = False
    holds_slot: bool = False


class SchedulerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.started: list[str] = []
        self.scheduler = Scheduler(2, self.clock, self.start)

    def start(self, daq: Any) -> None:
        self.started.append(daq.name)

    def enqueue(self, *names: str) -> list[Waiting]:
        daqs = [Waiting(name) for name in names]
        for daq in daqs:
            self.scheduler.enqueue(cast(Any, daq))
        return daqs

    def test_starts_in_arrival_order_up_to_the_limit_on_a_later_turn(self) -> None:
        self.enqueue("A", "B", "C")
        self.assertEqual(self.started, [], "nothing starts before the current reply is sent")
        self.clock.advance(0)
        self.assertEqual(self.started, ["A", "B"])
        self.assertEqual((self.scheduler.busy, self.scheduler.waiting), (2, 1))

    def test_a_released_slot_starts_the_next(self) -> None:
        first, _, _ = self.enqueue("A", "B", "C")
        self.clock.advance(0)
        self.scheduler.release(cast(Any, first))
        self.clock.advance(0)
        self.assertEqual(self.started, ["A", "B", "C"])

    def test_a_daq_aborted_while_it_waited_is_skipped(self) -> None:
        _, aborted, _ = self.enqueue("A", "B", "C")
        aborted.aborting = True
        self.clock.advance(0)
        self.assertEqual(self.started, ["A", "C"])

    def test_no_turn_is_spent_while_every_slot_is_busy(self) -> None:
        """Filling a queue behind busy slots costs nothing per DAQ but the append."""
        self.enqueue("A", "B")
        self.clock.advance(0)
        self.enqueue(*(f"W.{n}" for n in range(100)))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.scheduler.waiting, 100)

    def test_stop_cancels_the_pending_turn(self) -> None:
        self.enqueue("A")
        self.scheduler.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(0)
        self.assertEqual(self.started, [])
