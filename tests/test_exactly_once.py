"""Effects outside the workspace happen exactly once, whatever the moment of a crash;
nothing is published that the store did not commit.

A crash is played by a store writer that stops committing at a chosen change
(as after ``kill -9``, nothing from then on reaches the store) or by a step
at a receiver that never returns; then a new server starts on the same
workspace.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from dpmd.daq.persist.store import StoreError, Update
from dpmd.testing import synchronous
from tests.daqharness import FITS_BLOCK, Harness, specification


def delivery_states(change: Any) -> dict[str, str]:
    if not isinstance(change, Update):
        return {}
    deliveries = json.loads(change.record).get("deliveries", {})
    return {key: value["state"] for key, value in deliveries.items()}


class CrashingWriter:
    """Commits until a change matches; from then on nothing is committed any more."""

    def __init__(self, matches: Any) -> None:
        self._matches = matches
        self.crashed = False

    def __call__(self, function: Any, *args: Any) -> Deferred[Any]:
        if not self.crashed and any(self._matches(change) for change in args[0]):
            self.crashed = True
        if self.crashed:
            return Deferred()  # the process is gone: this commit never happens
        return synchronous(function, *args)


class ReleaseCrashTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.old = Harness(self)
        self.inbox = self.old.root / "olas"
        self.inbox.mkdir()
        self.final = self.inbox / "X.1.fits"
        self.staging = self.inbox / ".X.1.fits.dpmd-part"
        receivers = [{"type": "olasReceiver", "path": str(self.inbox)}]
        spec = specification("X.1", self.old.source("a.fits"), receivers=receivers)
        self.old.queue(spec)

    def crash_at(self, state: str) -> None:
        """Run the release until the store is asked to record ``state`` for receiver 0."""
        writer = CrashingWriter(lambda change: delivery_states(change).get("0") == state)
        self.old.run_writer = writer
        self.old.finish_merge()
        self.assertTrue(writer.crashed, f"the release never reached {state}")

    def restart(self) -> Harness:
        new = Harness(self, root=self.old.root)
        new.settle()
        return new

    def assertCompleted(self, new: Harness) -> None:
        self.assertEqual(new.status("X.1").substate.value, "Completed")
        self.assertFalse(self.staging.exists(), "no staging file is left behind")

    def test_killed_after_the_rename_before_it_was_recorded(self) -> None:
        self.crash_at("delivered")
        self.assertEqual(self.final.read_bytes(), FITS_BLOCK)
        inode = self.final.stat().st_ino
        new = self.restart()
        self.assertCompleted(new)
        self.assertEqual(self.final.stat().st_ino, inode, "the delivery is checked, not repeated")
        self.assertEqual(sorted(os.listdir(self.inbox)), ["X.1.fits", "X.1.fits.json"])

    def test_a_receiver_that_took_the_file_away_does_not_get_it_twice(self) -> None:
        self.crash_at("delivered")
        self.final.unlink()  # the archive ingested it on arrival
        new = self.restart()
        self.assertCompleted(new)
        self.assertEqual(os.listdir(self.inbox), ["X.1.fits.json"], "delivered once: never again")
        self.assertEqual(new.internal("X.1")["detail"]["released"]["0"]["path"], str(self.final))

    def test_killed_after_staging_before_it_was_recorded(self) -> None:
        self.crash_at("staged")
        self.assertTrue(self.staging.exists())
        self.assertFalse(self.final.exists())
        new = self.restart()
        self.assertCompleted(new)
        self.assertEqual(self.final.read_bytes(), FITS_BLOCK)
        self.assertEqual(sorted(os.listdir(self.inbox)), ["X.1.fits", "X.1.fits.json"])

    def test_killed_after_staging_was_recorded_before_the_rename(self) -> None:
        def never(function: Any, *args: Any) -> Any:
            if getattr(function, "__name__", "") == "publish":
                return Deferred()  # killed here: the rename never happens
            return synchronous(function, *args)

        self.old.run_blocking = never
        self.old.finish_merge()
        self.assertTrue(self.staging.exists())
        self.assertEqual(self.old.stored("X.1")["record"]["deliveries"]["0"]["state"], "staged")
        new = self.restart()
        self.assertCompleted(new)
        self.assertEqual(sorted(os.listdir(self.inbox)), ["X.1.fits", "X.1.fits.json"])

    def test_killed_before_anything_was_planned(self) -> None:
        self.crash_at("planned")
        self.assertEqual(os.listdir(self.inbox), [])
        new = self.restart()
        self.assertCompleted(new)
        self.assertEqual(sorted(os.listdir(self.inbox)), ["X.1.fits", "X.1.fits.json"])


class ExistingFileTests(SynchronousTestCase):
    def test_a_copy_of_the_product_already_there_counts_as_delivered(self) -> None:
        """Whatever its inode (an earlier copy, an rsync): same size and checksum."""
        h = Harness(self)
        inbox = h.root / "olas"
        inbox.mkdir()
        (inbox / "Y.1.fits").write_bytes(FITS_BLOCK)  # not a link of the product
        receivers = [{"type": "olasReceiver", "path": str(inbox)}]
        h.queue(specification("Y.1", h.source("a.fits"), receivers=receivers))
        h.finish_merge()
        self.assertEqual(h.status("Y.1").substate.value, "Completed")
        released = h.internal("Y.1")["detail"]["released"]
        self.assertEqual(released, {"0": {"path": str(inbox / "Y.1.fits"), "how": "existing"}})


class StoreFailureTests(SynchronousTestCase):
    """A change the store cannot commit is never published; the DAQ says why and waits."""

    def test_a_refused_commit_is_an_alert_and_retry_goes_on(self) -> None:
        h = Harness(self)
        h.queue(specification("Z.1", h.source("a.fits")))
        merger = h.merger()
        h.notifications()
        full = True

        def writer(function: Any, *args: Any) -> Deferred[Any]:
            if full:
                return fail(StoreError("database or disk is full"))
            return synchronous(function, *args)

        h.run_writer = writer
        merger.write_json({"type": "alert", "category": "UnmergedData", "key": "src0",
                           "severity": "Warning", "description": "not merged"})  # fmt: skip
        h.settle()
        [published] = h.notifications()
        self.assertEqual([a["category"] for a in published["alerts"]], ["WorkspaceError"])
        self.assertTrue(published["error"])
        self.assertIn("database or disk is full", published["alerts"][0]["description"])
        self.assertEqual(h.stored("Z.1")["record"]["alerts"], [], "not stored, not shown")
        self.assertIn(15, merger.signals, "the stage stops")
        merger.killed(15)
        h.settle()
        self.assertEqual(h.status("Z.1").substate.value, "Merging")
        full = False
        h.test.successResultOf(h.manager.retry_merge_daq("Z.1"))
        h.settle()
        h.finish_merge()
        self.assertEqual(h.status("Z.1").substate.value, "Completed")
        self.assertEqual(len(self.flushLoggedErrors()), 0)


class AbortDuringReleaseTests(SynchronousTestCase):
    def test_receivers_that_have_the_product_keep_it(self) -> None:
        h = Harness(self)
        ready, missing = h.root / "ready", h.root / "missing"
        ready.mkdir()
        receivers = [{"type": "olasReceiver", "path": str(ready)},
                     {"type": "olasReceiver", "path": str(missing)}]  # fmt: skip
        h.queue(specification("AB.1", h.source("a.fits"), receivers=receivers))
        h.finish_merge()
        self.assertTrue(h.status("AB.1").error)
        reply = h.test.successResultOf(h.manager.abort_daq("AB.1"))
        self.assertEqual(reply.to_json(), {"id": "AB.1", "error": True})
        final = h.status("AB.1")
        self.assertEqual(final.substate.value, "Aborted")
        self.assertIn(f"keep it: 0 ({ready / 'AB.1.fits'})", final.message)
        self.assertEqual((ready / "AB.1.fits").read_bytes(), FITS_BLOCK)
        self.assertEqual(sorted(os.listdir(ready)), ["AB.1.fits", "AB.1.fits.json"])

    def test_staging_files_of_undelivered_receivers_are_removed(self) -> None:
        h = Harness(self)
        inbox = h.root / "olas"
        inbox.mkdir()
        h.run_blocking = lambda function, *args: (
            Deferred() if getattr(function, "__name__", "") == "publish"
            else synchronous(function, *args)
        )
        receivers = [{"type": "olasReceiver", "path": str(inbox)}]
        h.queue(specification("AB.2", h.source("a.fits"), receivers=receivers))
        h.finish_merge()
        self.assertEqual(sorted(os.listdir(inbox)), [".AB.2.fits.dpmd-part", "AB.2.fits.json"])
        h.run_blocking = synchronous
        reply = h.test.successResultOf(h.manager.abort_daq("AB.2"))
        self.assertFalse(reply.error)
        self.assertEqual(os.listdir(inbox), [])

