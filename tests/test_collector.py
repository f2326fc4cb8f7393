"""No pause from the garbage collector: DAQs hold no cycles and few objects; start-up is frozen.

The pause itself is measured by ``bench/reactor.py`` (a 1 ms LoopingCall's worst
lateness with 13,000 DAQs queued and a full collection forced); these tests hold
the properties it rests on.
"""

from __future__ import annotations

import gc
import weakref

from twisted.trial.unittest import SynchronousTestCase

from dpmd.collector import FreezeAfterStart, freeze_what_lives_long
from tests.daqharness import Harness, specification


class DaqObjectsTests(SynchronousTestCase):
    def setUp(self) -> None:
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)

    def test_a_finished_daq_is_freed_without_a_collection(self) -> None:
        h = Harness(self)
        h.queue(specification("F.1", h.source("a.fits")))
        daq = h.manager.registry.get("F.1")
        assert daq is not None
        record = weakref.ref(daq.record)
        gone = weakref.ref(daq)
        del daq
        h.finish_merge()
        h.settle()
        self.assertEqual(h.status("F.1").substate.value, "Completed")
        self.assertIsNone(gone(), "a reference cycle (or a room) keeps the finished DAQ")
        self.assertIsNone(record(), "and its record")

    def test_a_queued_daq_costs_the_collector_one_object(self) -> None:
        h = Harness(self)
        h.queue(specification("Q.0", "/nonexistent/a.fits"))  # blocks: the rest waits
        gc.collect()
        existing = {id(thing) for thing in gc.get_objects()}
        ids = [f"Q.{n}" for n in range(1, 401)]
        for daq_id in ids:
            h.queue(specification(daq_id, h.source("a.fits")))
        daqs = [h.manager.registry.get(daq_id) for daq_id in ids]
        per_daq = len(tracked_objects_held_by(daqs, existing)) / len(ids)
        self.assertLess(per_daq, 1.5, "objects the collector traverses per queued DAQ")
        queued = h.manager.registry.get("Q.7")
        assert queued is not None
        self.assertEqual(queued.record.id, "Q.7", "its record is there when asked for")
        self.assertEqual(h.status("Q.7").substate.value, "Scheduled")
        self.assertEqual(len(h.active()), 401)


def tracked_objects_held_by(roots: list[object], existing: set[int]) -> set[int]:
    """The objects the collector tracks that ``roots`` hold (themselves included), but
    those that were there before them (the rooms they share)."""
    found: set[int] = set()
    todo = [root for root in roots if gc.is_tracked(root)]
    while todo:
        thing = todo.pop()
        if id(thing) in found or id(thing) in existing:
            continue
        found.add(id(thing))
        todo.extend(held for held in gc.get_referents(thing) if gc.is_tracked(held))
    return found


class FreezeTests(SynchronousTestCase):
    def test_what_lives_at_start_is_frozen(self) -> None:
        self.addCleanup(gc.unfreeze)
        alive = [object() for _ in range(3)]
        self.assertGreater(freeze_what_lives_long(), len(alive))
        self.assertEqual(gc.get_count()[2], 0)
        self.assertFalse(any(tracked is alive for tracked in gc.get_objects()),
                         "a frozen object is in no generation a collection traverses")

    def test_the_service_freezes_when_it_starts(self) -> None:
        self.addCleanup(gc.unfreeze)
        gc.unfreeze()
        service = FreezeAfterStart()
        service.startService()
        self.assertTrue(service.running)
        self.assertGreater(gc.get_freeze_count(), 0)
