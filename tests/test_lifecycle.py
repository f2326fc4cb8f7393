"""The DAQ lifecycle: every transition, every illegal call, abort, retry, limits, recovery."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from dpmd.daq.admission import intake
from dpmd.daq.admission.intake import QueuedLog
from dpmd.daq.admission.validator import MODULE as VETTING
from dpmd.daq.lifecycle import TRANSITIONS, Daq, Event, IllegalRequest
from dpmd.daq.persist.store import Insert, StoreError
from dpmd.digest import file_digest
from dpmd.model import DaqError, DaqSubState
from dpmd.record import DaqRecord
from dpmd.testing import FakeProcess, synchronous
from tests.daqharness import FITS_BLOCK, Harness, specification

S = DaqSubState


class TransitionTableTests(SynchronousTestCase):
    def make(self, substate: DaqSubState) -> Daq:
        from twisted.internet.task import Clock

        record = DaqRecord(id="X", file_id="X", seq=1, substate=substate, queued_at=0,
                           timestamp=0)  # fmt: skip

        def commit(daq: Daq, record: DaqRecord) -> Deferred[None]:
            daq.committed(record)
            return succeed(None)

        return Daq(record, Clock(), commit)

    def test_every_pair_outside_the_table_is_refused(self) -> None:
        for substate in DaqSubState:
            for event in Event:
                daq = self.make(substate)
                target = TRANSITIONS.get((substate, event))
                with self.subTest(substate=substate, event=event):
                    if target is None:
                        error = self.assertRaises(IllegalRequest, daq.fire, event, "")
                        self.assertIn(substate.value, error.message)
                        self.assertEqual(daq.substate, substate)
                    else:
                        daq.fire(event, "moved")
                        self.assertEqual(daq.substate, target)
                        self.assertEqual(daq.record.history[-1]["substate"], target.value)

    def test_final_transitions_set_finished_at(self) -> None:
        daq = self.make(S.Releasing)
        daq.fire(Event.RELEASED, "done")
        self.assertIsNotNone(daq.record.finished_at)
        self.assertEqual(daq.record.status().state.value, "StateCompleted")


class HappyPathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)

    def test_queue_to_completed(self) -> None:
        h = self.h
        location = h.source("dcs.fits")
        reply = h.queue(specification("A.1", location))
        self.assertEqual(reply.to_json(), {"id": "A.1", "error": False})
        folder = h.workspace.daq_dir("A.1")
        self.assertEqual(h.stored("A.1")["record"]["substate"], "Merging")
        self.assertEqual(json.loads((folder / "specification.json").read_text())["id"], "A.1")
        merger = h.merger()
        self.assertEqual(h.status("A.1").substate, S.Merging)
        self.assertEqual(json.loads((folder / "resolve.json").read_text()), {"src0": location})
        self.assertIn("--json", merger.argv)
        self.assertIsInstance(merger.child_fds[2], int)  # stderr goes to logs/merge.log
        h.finish_merge()
        released = h.config.release_dir / "A.1.fits"
        self.assertEqual(released.read_bytes(), FITS_BLOCK)
        # Releasing: the plan (size and checksum), the product staged, then delivered.
        self.assertEqual(
            h.substates(),
            ["Scheduled", "Collecting", "Merging", "Releasing", "Releasing", "Releasing",
             "Releasing", "Completed"],
        )  # fmt: skip
        self.assertFalse(folder.exists())
        archived = h.workspace.archived_dir("A.1")
        self.assertTrue((archived / "logs").exists())
        self.assertFalse((archived / "A.1.fits").exists(), "a released product is not kept")
        self.assertTrue(h.stored("A.1")["archived"])
        final = h.status("A.1")
        self.assertEqual((final.substate, final.result), (S.Completed, str(released)))
        internal = h.internal("A.1")
        self.assertTrue(internal["detail"]["archived"])
        self.assertEqual(internal["status"]["result"], str(released))
        self.assertEqual(
            [e["substate"] for e in internal["detail"]["history"]],
            ["Scheduled", "Collecting", "Merging", "Releasing", "Completed"],
        )

    def test_final_status_is_published_before_archiving(self) -> None:
        h = self.h
        h.queue(specification("A.2", h.source("a.fits")))
        h.finish_merge()
        last = h.notifications()[-1]
        self.assertEqual((last["substate"], last["state"]), ("Completed", "StateCompleted"))
        self.assertEqual(last["result"], str(h.config.release_dir / "A.2.fits"))

    def test_internal_status_while_merging(self) -> None:
        h = self.h
        h.queue(specification("A.3", h.source("a.fits")))
        merger = h.merger()
        merger.write_json({"type": "progress", "stage": "copying", "done": 5, "total": 20,
                           "unit": "bytes"})  # fmt: skip
        detail = h.internal("A.3")["detail"]
        self.assertEqual(detail["progress"], {"stage": "copying", "done": 5, "total": 20,
                                              "unit": "bytes"})  # fmt: skip
        self.assertEqual(detail["processes"][0]["kind"], "merge")
        self.assertEqual(detail["processes"][0]["pid"], merger.pid)
        [source] = detail["sources"]
        self.assertEqual((source["name"], source["state"], source["bytes"]),
                         ("src0", "collected", len(FITS_BLOCK)))  # fmt: skip
        self.assertFalse(detail["archived"])
        self.assertEqual(detail["workspace"], str(h.workspace.daq_dir("A.3")))

    def test_merger_alerts_become_daq_alerts(self) -> None:
        h = self.h
        h.queue(specification("A.4", h.source("a.fits")))
        h.finish_merge(
            alerts=[
                {
                    "category": "UnmergedData",
                    "key": "src0",
                    "severity": "Warning",
                    "description": "primary data of src0 not merged",
                }
            ]
        )
        final = h.notifications()[-1]
        self.assertEqual(final["substate"], "Completed")
        self.assertFalse(final["error"])
        self.assertEqual(
            [(a["category"], a["key"], a["severity"]) for a in final["alerts"]],
            [("UnmergedData", "src0", "Warning")],
        )

    def test_receivers_get_hard_links_named_after_the_file_id(self) -> None:
        h = self.h
        inbox = [h.root / "olas1", h.root / "olas2"]
        for folder in inbox:
            folder.mkdir()
        receivers = [{"type": "olasReceiver", "path": str(folder)} for folder in inbox]
        spec = specification("A.5", h.source("a.fits"), receivers=receivers)
        spec["target"]["filePrefix"] = "pre_"
        h.queue(spec)
        product = h.finish_merge()
        self.assertEqual(product.name, "pre_A.5.fits")
        for folder in inbox:
            self.assertEqual((folder / "A.5.fits").read_bytes(), FITS_BLOCK)
        self.assertEqual(os.stat(inbox[0] / "A.5.fits").st_nlink, 2)
        self.assertEqual(h.notifications()[-1]["result"], str(inbox[0] / "A.5.fits"))

    def test_get_active_daqs_oldest_first(self) -> None:
        h = self.h
        for name in ("B.1", "B.2", "B.3"):
            h.queue(specification(name, h.source("a.fits")))
        statuses = h.active()
        self.assertEqual(
            [(s["id"], s["substate"]) for s in statuses],
            [("B.1", "Merging"), ("B.2", "Scheduled"), ("B.3", "Scheduled")],
        )

    def test_with_nobody_subscribed_a_change_encodes_no_status(self) -> None:
        """Publishing costs nothing when nobody listens; a status call still answers.

        A DAQ's status is encoded once when it is accepted (it may wait long in the
        queue, and GetActiveDaqs then only joins bytes); its changes, with nobody
        subscribed, are encoded only when a status call asks."""
        h = self.h
        h.hub.unsubscribe_all(h.session)
        encoded: list[str] = []
        real = Daq.wire_status

        def counted(daq: Daq) -> Any:
            encoded.append(daq.id)
            return real(daq)

        self.patch(Daq, "wire_status", counted)
        h.queue(specification("N.1", h.source("a.fits")))
        h.queue(specification("N.2", h.source("a.fits")))
        self.assertEqual(encoded, ["N.1", "N.2"], "once each, when accepted")
        self.assertEqual([s["id"] for s in h.active()], ["N.1", "N.2"])
        self.assertEqual(encoded, ["N.1", "N.2", "N.1"], "N.1 changed (it started); N.2 waits")
        h.active()
        self.assertEqual(len(encoded), 3, "once per change")
        h.hub.subscribe("/daq/status", h.session)
        h.queue(specification("N.3", h.source("a.fits")))
        self.assertEqual(h.notifications()[-1]["id"], "N.3")


class RefusalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)

    def test_duplicate_ids(self) -> None:
        h = self.h
        spec = specification("D.1", h.source("a.fits"))
        h.queue(spec)
        other = specification("D.1", h.source("b.fits"))
        self.assertIn("already queued with a different specification",
                      h.refused(h.manager.queue_daq(other)))  # fmt: skip
        h.finish_merge()
        self.assertIn("already archived with a different specification",
                      h.refused(h.manager.queue_daq(other)))  # fmt: skip

    def test_the_same_specification_again_is_answered_with_success(self) -> None:
        """A coordinator that lost a reply sends QueueDaq again: the same DaqReply."""
        h = self.h
        text = json.dumps(specification("D.2", h.source("a.fits")))
        first = h.queue(text)
        h.notifications()
        self.assertEqual(h.queue(text), first)
        self.assertEqual(h.notifications(), [], "nothing is queued twice")
        h.finish_merge()
        self.assertEqual(h.queue(text), first, "archived DAQs too")
        self.assertEqual(h.active(), [])
        same_object = specification("D.3", h.source("a.fits"))
        self.assertEqual(h.queue(same_object), h.queue(same_object))

    def test_invalid_specifications_name_the_problem(self) -> None:
        h = self.h
        cases = [
            ("{", "not valid JSON"),
            (json.dumps({"id": "X"}), "$"),
            ({**specification("bad/id"), "target": {"fileId": "OK"}}, "$.id"),
            ({**specification(".."), "target": {"fileId": "OK"}}, "$.id"),
            ({**specification("x" * 129), "target": {"fileId": "OK"}}, "$.id"),
            ({**specification("OK.1"), "target": {"fileId": "a b"}}, "$.target.fileId"),
            ({**specification("OK.2"), "sources": [{"type": "fitsFile", "sourceName": "s"}]},
             "$.sources[0]"),
        ]  # fmt: skip
        for document, named in cases:
            with self.subTest(document=document):
                message = h.refused(h.manager.queue_daq(document))
                self.assertIn("invalid specification", message)
                self.assertIn(named, message)
        self.assertEqual(h.notifications(), [])

    def test_unknown_ids(self) -> None:
        h = self.h
        for call in (h.manager.get_daq_status, h.manager.abort_daq, h.manager.retry_merge_daq,
                     h.manager.get_internal_daq_status):  # fmt: skip
            self.assertEqual(h.refused(call("NOPE")), "unknown DAQ id 'NOPE'")

    def test_specification_kept_exactly_as_received(self) -> None:
        h = self.h
        text = json.dumps(specification("E.1", h.source("a.fits")), indent=4) + "\n\n"
        h.queue(text)
        self.assertEqual(h.stored("E.1")["specification"], text.encode())
        written = (h.workspace.daq_dir("E.1") / "specification.json").read_text()
        self.assertEqual(written, text, "the merger reads exactly what was received")


class FailureAndRetryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)

    def test_missing_source_then_retry(self) -> None:
        h = self.h
        missing = h.root / "data" / "late.fits"
        h.queue(specification("F.1", h.source("a.fits"), str(missing)))
        status = h.status("F.1")
        self.assertEqual(status.substate, S.Collecting)
        self.assertTrue(status.error)
        [alert] = status.alerts
        self.assertEqual((alert.category, alert.key), ("SourceFileCollectionError", "src1"))
        self.assertIn(str(missing), alert.description)
        missing.write_bytes(FITS_BLOCK)
        self.assertIsNone(h.test.successResultOf(h.manager.retry_merge_daq("F.1")))
        h.settle()
        self.assertEqual(h.status("F.1").substate, S.Merging)
        self.assertFalse(h.status("F.1").error)

    def test_every_bad_source_gets_its_own_alert(self) -> None:
        h = self.h
        not_fits = h.root / "data" / "notes.txt"
        not_fits.parent.mkdir(parents=True, exist_ok=True)
        not_fits.write_text("hello")
        h.queue(specification("F.2", "/no/such/file.fits", str(not_fits), str(h.root / "data")))
        alerts = {a.key: a.description for a in h.status("F.2").alerts}
        self.assertIn("does not exist", alerts["src0"])
        self.assertIn("not a FITS file", alerts["src1"])
        self.assertIn("not a regular file", alerts["src2"])

    def test_failed_merge_then_retry(self) -> None:
        h = self.h
        h.queue(specification("F.3", h.source("a.fits")))
        first = h.merger()
        h.fail_merge(4, b"cannot open src0")
        status = h.status("F.3")
        self.assertEqual(status.substate, S.Merging)
        [alert] = status.alerts
        self.assertEqual((alert.category, alert.key, alert.severity.value),
                         ("MergeError", "merge", "Error"))  # fmt: skip
        self.assertIn("exit status 4", alert.description)
        self.assertIn("cannot open src0", alert.description)
        self.assertEqual(h.reactor.running_processes(), [])
        h.test.successResultOf(h.manager.retry_merge_daq("F.3"))
        h.settle()
        second = h.merger()
        self.assertIsNot(first, second)
        h.finish_merge()
        self.assertEqual(h.notifications()[-1]["substate"], "Completed")

    def test_failed_release_then_retry_skips_done_receivers(self) -> None:
        h = self.h
        ready, late = h.root / "ready", h.root / "late"
        ready.mkdir()
        receivers = [{"type": "olasReceiver", "path": str(ready)},
                     {"type": "olasReceiver", "path": str(late)}]  # fmt: skip
        h.queue(specification("F.4", h.source("a.fits"), receivers=receivers))
        h.finish_merge()
        status = h.status("F.4")
        self.assertEqual(status.substate, S.Releasing)
        [alert] = status.alerts
        self.assertEqual((alert.category, alert.key), ("SourceFileReleasingError", "1"))
        (ready / "F.4.fits").unlink()  # proves the retry does not send to receiver 0 again
        late.mkdir()
        h.test.successResultOf(h.manager.retry_merge_daq("F.4"))
        h.settle()
        self.assertEqual(h.notifications()[-1]["substate"], "Completed")
        self.assertTrue((late / "F.4.fits").exists())
        self.assertFalse((ready / "F.4.fits").exists())

    def test_release_refuses_to_overwrite_another_file(self) -> None:
        h = self.h
        (h.config.release_dir).mkdir(parents=True)
        (h.config.release_dir / "F.5.fits").write_bytes(b"someone else's")
        h.queue(specification("F.5", h.source("a.fits")))
        h.finish_merge()
        [alert] = h.status("F.5").alerts
        self.assertEqual(alert.key, "release_dir")
        self.assertIn("a different file is already at", alert.description)
        theirs = file_digest(h.config.release_dir / "F.5.fits").blake2b[:16]
        self.assertIn(f"14 bytes, blake2b {theirs}", alert.description)
        self.assertIn(f"{len(FITS_BLOCK)} bytes", alert.description)
        self.assertEqual((h.config.release_dir / "F.5.fits").read_bytes(), b"someone else's")
        self.assertEqual(h.reactor.running_processes(), [], "not retried in a loop")

    def test_retry_is_refused_when_nothing_failed(self) -> None:
        h = self.h
        h.queue(specification("F.6", h.source("a.fits")))
        h.queue(specification("F.7", h.source("b.fits")))
        self.assertIn("Scheduled", h.refused(h.manager.retry_merge_daq("F.7")))
        self.assertIn("nothing to retry", h.refused(h.manager.retry_merge_daq("F.6")))
        h.finish_merge()
        self.assertIn("archived", h.refused(h.manager.retry_merge_daq("F.6")))


class AbortTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)

    def test_abort_scheduled_is_immediate(self) -> None:
        h = self.h
        h.queue(specification("G.1", h.source("a.fits")))
        h.queue(specification("G.2", h.source("b.fits")))
        reply = h.test.successResultOf(h.manager.abort_daq("G.2"))
        self.assertEqual(reply.id, "G.2")
        self.assertTrue(h.stored("G.2")["archived"])
        self.assertEqual(h.status("G.2").substate, S.Aborted)
        last = h.notifications()[-1]
        self.assertEqual((last["id"], last["substate"], last["state"]),
                         ("G.2", "Aborted", "StateCompleted"))  # fmt: skip

    def test_abort_blocked_collection(self) -> None:
        h = self.h
        h.queue(specification("G.3", "/missing.fits"))
        self.assertTrue(h.status("G.3").error)
        h.test.successResultOf(h.manager.abort_daq("G.3"))
        final = h.notifications()[-1]
        self.assertEqual(final["substate"], "Aborted")
        self.assertFalse(final["error"])

    def test_abort_while_merging_stops_the_merger_and_removes_partial_files(self) -> None:
        h = self.h
        h.queue(specification("G.4", h.source("a.fits")))
        merger = h.merger()
        folder = h.workspace.daq_dir("G.4")
        partial = folder / ".G.4.fits.123.dpmd-tmp"
        partial.write_bytes(b"half")
        aborting = h.manager.abort_daq("G.4")
        self.assertNoResult(aborting)
        self.assertEqual(h.status("G.4").substate, S.Aborting)
        self.assertEqual(h.terminate_signals(merger), [signal.SIGTERM])
        merger.killed(signal.SIGTERM)
        h.settle()
        self.assertEqual(h.test.successResultOf(aborting).id, "G.4")
        self.assertEqual(h.substates()[-2:], ["Aborting", "Aborted"])
        self.assertFalse((h.workspace.archived_dir("G.4") / partial.name).exists())

    def test_abort_kills_a_merger_that_ignores_sigterm(self) -> None:
        h = self.h
        h.queue(specification("G.5", h.source("a.fits")))
        merger = h.merger()
        aborting = h.manager.abort_daq("G.5")
        h.reactor.advance(h.config.shutdown_timeout)
        self.assertEqual(h.terminate_signals(merger), [signal.SIGTERM, signal.SIGKILL])
        merger.killed(signal.SIGKILL)
        h.settle()
        h.test.successResultOf(aborting)

    def test_abort_fails_fast_when_the_merger_cannot_be_stopped(self) -> None:
        h = self.h
        h.queue(specification("G.6", h.source("a.fits")))
        merger = h.merger()
        aborting = h.manager.abort_daq("G.6")
        h.reactor.advance(h.config.shutdown_timeout)
        h.reactor.advance(h.config.shutdown_timeout)
        message = h.refused(aborting)
        self.assertIn("stays Aborting", message)
        status = h.status("G.6")
        self.assertEqual(status.substate, S.Aborting)
        self.assertTrue(status.error)
        self.assertEqual(status.alerts[-1].category, "FailedOperation")
        self.assertEqual(status.alerts[-1].key, "AbortDaq")
        again = h.manager.abort_daq("G.6")
        merger.killed(signal.SIGKILL)
        h.settle()
        h.test.successResultOf(again)
        self.assertEqual(h.notifications()[-1]["substate"], "Aborted")

    def test_two_aborts_get_the_same_answer(self) -> None:
        h = self.h
        h.queue(specification("G.7", h.source("a.fits")))
        merger = h.merger()
        first, second = h.manager.abort_daq("G.7"), h.manager.abort_daq("G.7")
        merger.killed(signal.SIGTERM)
        h.settle()
        self.assertEqual(h.test.successResultOf(first), h.test.successResultOf(second))

    def test_abort_while_releasing(self) -> None:
        h = self.h
        receivers = [{"type": "olasReceiver", "path": str(h.root / "nowhere")}]
        h.queue(specification("G.8", h.source("a.fits"), receivers=receivers))
        product = h.finish_merge()
        self.assertEqual(h.status("G.8").substate, S.Releasing)
        h.test.successResultOf(h.manager.abort_daq("G.8"))
        self.assertFalse(product.exists())
        self.assertEqual(h.notifications()[-1]["substate"], "Aborted")

    def test_abort_of_a_finished_daq_is_refused(self) -> None:
        h = self.h
        h.queue(specification("G.9", h.source("a.fits")))
        h.finish_merge()
        self.assertIn("archived", h.refused(h.manager.abort_daq("G.9")))


class LimitTests(SynchronousTestCase):
    def test_one_daq_at_a_time_and_a_blocked_daq_holds_its_slot(self) -> None:
        h = Harness(self)
        h.queue(specification("H.1", "/missing.fits"))
        h.queue(specification("H.2", h.source("b.fits")))
        self.assertEqual(h.status("H.1").substate, S.Collecting)
        self.assertEqual(h.status("H.2").substate, S.Scheduled)
        h.test.successResultOf(h.manager.abort_daq("H.1"))
        h.settle()
        self.assertEqual(h.status("H.2").substate, S.Merging)

    def test_merge_limit_queues_merges(self) -> None:
        h = Harness(self, **{"limits.daq": 3, "limits.merge": 1})
        for name in ("H.3", "H.4"):
            h.queue(specification(name, h.source(f"{name}.fits")))
        self.assertEqual([h.status(n).substate for n in ("H.3", "H.4")], [S.Merging, S.Merging])
        first = h.merger()
        self.assertIn("waiting", h.internal("H.4")["detail"]["progress"]["stage"])
        h.finish_merge(first)
        second = h.merger()
        self.assertIn("H.4", second.argv[-1])

    def test_parallel_merges_within_the_limit(self) -> None:
        h = Harness(self, **{"limits.daq": 2, "limits.merge": 2})
        for name in ("H.5", "H.6", "H.7"):
            h.queue(specification(name, h.source(f"{name}.fits")))
        self.assertEqual(len(h.reactor.running_processes()), 2)
        self.assertEqual(h.status("H.7").substate, S.Scheduled)


class RecoveryTests(SynchronousTestCase):
    def restart(self, old: Harness) -> Harness:
        """A new server on the same workspace, as after a kill -9 of the old one."""
        return Harness(self, root=old.root)

    def test_interrupted_merge_runs_again_and_queued_daqs_survive(self) -> None:
        old = Harness(self)
        old.queue(specification("R.1", old.source("a.fits")))
        old.queue(specification("R.2", old.source("b.fits")))
        (old.workspace.daq_dir("R.1") / ".R.1.fits.9.dpmd-tmp").write_bytes(b"half")
        new = self.restart(old)
        self.assertEqual([s["id"] for s in new.active()], ["R.1", "R.2"])
        merger = new.merger()
        self.assertIn("R.1", merger.argv[-1])
        self.assertEqual(list(new.workspace.daq_dir("R.1").glob(".*dpmd-tmp")), [])
        new.finish_merge()
        new.finish_merge()
        self.assertEqual(
            [s["substate"] for s in new.notifications() if s["id"] == "R.2"][-1], "Completed"
        )
        self.assertTrue(new.workspace.archived_dir("R.2").exists())

    def test_blocked_daq_stays_blocked(self) -> None:
        old = Harness(self)
        old.queue(specification("R.3", "/missing.fits"))
        new = self.restart(old)
        status = new.status("R.3")
        self.assertTrue(status.error)
        self.assertEqual(status.substate, S.Collecting)
        self.assertEqual(new.reactor.processes, [])

    def test_aborting_daq_finishes_aborting(self) -> None:
        old = Harness(self)
        old.queue(specification("R.4", old.source("a.fits")))
        old.manager.abort_daq("R.4")
        self.assertEqual(old.status("R.4").substate, S.Aborting)
        new = self.restart(old)
        self.assertEqual(new.notifications()[-1]["substate"], "Aborted")
        self.assertTrue(new.workspace.archived_dir("R.4").exists())

    def test_a_finished_daq_left_in_daqs_is_archived_at_start(self) -> None:
        """Killed after the final record was committed, before its folder moved."""
        old = Harness(self)
        old.queue(specification("R.5", old.source("a.fits")))
        old.finish_merge()
        os.rename(old.workspace.archived_dir("R.5"), old.workspace.daq_dir("R.5"))
        new = self.restart(old)
        new.settle()
        self.assertFalse(new.workspace.daq_dir("R.5").exists())
        self.assertTrue((new.workspace.archived_dir("R.5") / "logs").exists())

    def test_unreadable_records_are_set_aside(self) -> None:
        old = Harness(self)
        old.queue(specification("R.6", old.source("a.fits")))
        old.queue(specification("R.7", old.source("b.fits")))
        with closing(sqlite3.connect(old.workspace.root / "dpmd.sqlite3")) as db, db:
            db.execute("UPDATE daq SET record = '{not json' WHERE id = 'R.6'")
        new = self.restart(old)
        self.assertEqual([s["id"] for s in new.active()], ["R.7"])
        self.assertEqual(new.stored("R.6")["substate"], "SetAside")
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_left_over_folders_of_no_daq_are_removed(self) -> None:
        old = Harness(self)
        stray = old.workspace.daq_dir("NEVER.1")
        (stray / "sources").mkdir(parents=True)
        new = self.restart(old)
        new.settle()
        self.assertFalse(stray.exists())
        self.assertEqual(new.active(), [])

    def test_next_queue_number_follows_the_recovered_ones(self) -> None:
        old = Harness(self)
        old.queue(specification("R.10", "/missing.fits"))
        new = self.restart(old)
        new.queue(specification("R.11", new.source("a.fits")))
        self.assertLess(new.stored("R.10")["seq"], new.stored("R.11")["seq"])


class DurabilityTests(SynchronousTestCase):
    def test_reply_waits_for_the_store(self) -> None:
        h = Harness(self)
        commits: list[Deferred[Any]] = []

        def held(function: Any, *args: Any) -> Deferred[Any]:
            pending: Deferred[Any] = Deferred()
            pending.addCallback(lambda _: function(*args))
            commits.append(pending)
            return pending

        h.run_writer = held
        reply = h.manager.queue_daq(specification("W.0", h.source("a.fits")))
        self.assertNoResult(reply)
        self.assertEqual(h.notifications(), [], "nothing is published before its commit")
        commits[0].callback(None)
        self.assertEqual(h.stored("W.0")["substate"], "Scheduled")
        self.assertEqual(self.successResultOf(reply).id, "W.0")

    def test_the_record_is_rewritten_at_each_change(self) -> None:
        h = Harness(self)
        h.queue(specification("W.1", "/missing.fits"))
        record = h.stored("W.1")["record"]
        self.assertEqual(record["substate"], "Collecting")
        self.assertEqual(record["alerts"][0]["category"], "SourceFileCollectionError")
        folder = h.workspace.daq_dir("W.1")
        self.assertEqual(sorted(p.name for p in folder.iterdir()),
                         ["logs", "sources", "specification.json"])  # fmt: skip

    def test_a_queued_daq_writes_nothing_but_its_row(self) -> None:
        h = Harness(self)
        h.queue(specification("W.3", "/missing.fits"))
        h.queue(specification("W.4", h.source("a.fits")))
        self.assertEqual(h.stored("W.4")["substate"], "Scheduled")
        self.assertFalse(h.workspace.daq_dir("W.4").exists())

    def test_a_full_store_refuses_the_daq(self) -> None:
        h = Harness(self)

        def full(function: Any, *args: Any) -> Deferred[Any]:
            return fail(StoreError("database or disk is full"))

        h.run_writer = full
        message = h.refused(h.manager.queue_daq(specification("W.2", h.source("a.fits"))))
        self.assertIn("database or disk is full", message)
        self.assertEqual(h.active(), [])
        self.assertEqual(h.notifications(), [])
        self.assertEqual(len(self.flushLoggedErrors()), 0)


class RemoteCollectionTests(SynchronousTestCase):
    """Collection of ``host:/path`` sources with (fake) rsync children."""

    def setUp(self) -> None:
        self.h = Harness(
            self, **{"limits.transfer": 2, "transfer.retries": 1, "transfer.retry_delay": 10,
                     "transfer.timeout": 60}
        )  # fmt: skip

    def rsyncs(self) -> list[FakeProcess]:
        return [p for p in self.h.reactor.running_processes() if p.argv[0] == "rsync"]

    def land(self, process: FakeProcess) -> None:
        """Play rsync: the copy appears under the name it was given, then it exits 0."""
        Path(process.argv[-1]).write_bytes(FITS_BLOCK)
        process.exit(0)
        self.h.settle()

    def test_transfers_run_in_parallel_within_the_limit(self) -> None:
        h = self.h
        h.queue(specification("T.1", "fcs:/d/a.fits", "fcs:/d/b.fits", "op@dcs:/d/c.fits"))
        first = self.rsyncs()
        self.assertEqual(len(first), 2)
        self.assertEqual([p.argv[-2] for p in first], ["fcs:/d/a.fits", "fcs:/d/b.fits"])
        self.assertIn("--partial", first[0].argv)
        self.assertIn("--", first[0].argv)
        self.land(first[0])
        [third] = [p for p in self.rsyncs() if p not in first]
        self.assertEqual(third.argv[-2], "op@dcs:/d/c.fits")
        self.land(first[1])
        self.land(third)
        self.assertEqual(h.status("T.1").substate, S.Merging)
        sources = {s["name"]: s for s in h.internal("T.1")["detail"]["sources"]}
        self.assertEqual(sources["src2"]["local_path"],
                         str(h.workspace.daq_dir("T.1") / "sources" / "src2.fits"))  # fmt: skip

    def test_progress_counts_bytes(self) -> None:
        h = self.h
        h.queue(specification("T.2", "fcs:/d/a.fits"))
        [rsync] = self.rsyncs()
        rsync.protocol.childDataReceived(1, b"      1,048,576  50%   10.00MB/s    0:00:01\r")
        self.assertEqual(h.internal("T.2")["detail"]["progress"],
                         {"stage": "collecting", "done": 1048576, "total": 2097152,
                          "unit": "bytes"})  # fmt: skip

    def test_progress_is_honest_exact_totals_that_never_go_back(self) -> None:
        h = self.h
        h.remote_size = 3 << 20
        h.queue(specification("T.6", "fcs:/d/a.fits", "fcs:/d/b.fits"))
        first, _second = self.rsyncs()
        first.protocol.childDataReceived(1, b"      1,048,576  71%   10.00MB/s    0:00:01\r")
        first.protocol.childDataReceived(1, b"        900,000  64%   10.00MB/s    0:00:01\r")
        detail = h.internal("T.6")["detail"]
        self.assertEqual((detail["progress"]["done"], detail["progress"]["total"]),
                         (1 << 20, 6 << 20), "the totals are the files' sizes")  # fmt: skip
        by_name = {source["name"]: source for source in detail["sources"]}
        self.assertEqual((by_name["src0"]["state"], by_name["src0"]["bytes"],
                          by_name["src0"]["size"]), ("collecting", 1 << 20, 3 << 20))  # fmt: skip
        self.assertEqual((by_name["src1"]["bytes"], by_name["src1"]["size"]), (0, 3 << 20))
        first.protocol.childDataReceived(1, b"      9,999,999 100%   10.00MB/s    0:00:01\r")
        self.assertEqual(h.internal("T.6")["detail"]["progress"]["done"], 3 << 20,
                         "never beyond the file's size")  # fmt: skip

    def test_failed_transfer_is_retried_after_a_delay_then_alerted(self) -> None:
        h = self.h
        h.queue(specification("T.3", "fcs:/d/a.fits"))
        [first] = self.rsyncs()
        first.write_stderr(b'rsync: [sender] link_stat "/d/a.fits" failed: No such file (2)\n')
        first.exit(23)
        h.settle()
        self.assertFalse(h.status("T.3").error, "no alert before the retries are spent")
        self.assertEqual(self.rsyncs(), [])
        h.reactor.advance(10)
        [second] = self.rsyncs()
        second.write_stderr(b'rsync: [sender] link_stat "/d/a.fits" failed: No such file (2)\n')
        second.exit(23)
        h.settle()
        [alert] = h.status("T.3").alerts
        self.assertEqual((alert.category, alert.key), ("SourceFileCollectionError", "src0"))
        self.assertIn("link_stat", alert.description)
        self.assertIn("after 2 attempts", alert.description)

    def test_silent_transfer_is_stopped(self) -> None:
        h = self.h
        h.queue(specification("T.4", "fcs:/d/a.fits"))
        [rsync] = self.rsyncs()
        h.reactor.advance(59)
        rsync.protocol.childDataReceived(1, b"  10  1%  1kB/s  0:00:09\r")
        h.reactor.advance(59)
        self.assertEqual(h.terminate_signals(rsync), [])
        h.reactor.advance(1)
        self.assertEqual(h.terminate_signals(rsync), [signal.SIGTERM])

    def test_abort_while_collecting_stops_the_transfers(self) -> None:
        h = self.h
        h.queue(specification("T.5", "fcs:/d/a.fits", "fcs:/d/b.fits"))
        transfers = self.rsyncs()
        aborting = h.manager.abort_daq("T.5")
        self.assertEqual([h.terminate_signals(p) for p in transfers], [[signal.SIGTERM]] * 2)
        for process in transfers:
            process.killed(signal.SIGTERM)
        h.settle()
        self.successResultOf(aborting)
        self.assertEqual(h.notifications()[-1]["substate"], "Aborted")
        self.assertEqual(self.rsyncs(), [])


class QueueOrderTests(SynchronousTestCase):
    """An arrival with nothing ahead is checked at once; the others go to the vetting child."""

    def held_commits(self, h: Harness) -> list[Deferred[Any]]:
        commits: list[Deferred[Any]] = []

        def held(function: Any, *args: Any) -> Deferred[Any]:
            pending: Deferred[Any] = Deferred()
            pending.addCallback(lambda _: function(*args))
            commits.append(pending)
            return pending

        h.run_writer = held
        return commits

    def vetting(self, h: Harness) -> list[FakeProcess]:
        return [p for p in h.reactor.running_processes() if VETTING in p.argv]

    def admitting(self, h: Harness) -> Harness:
        """The harness with its vetting child started and ready, as the server starts it."""
        h.manager.prepare_admission()
        h.settle()
        return h

    def test_arrivals_during_a_commit_are_checked_by_the_child_and_queued_in_order(self) -> None:
        h = self.admitting(Harness(self))
        commits = self.held_commits(h)
        first = h.manager.queue_daq(specification("Q.1", "/missing.fits"))
        [child] = self.vetting(h)
        self.assertEqual(child.stdin, b"", "nothing ahead: checked on the reactor")
        later = [h.manager.queue_daq(specification(f"Q.{n}", "/missing.fits")) for n in (2, 3)]
        self.assertEqual(child.stdin.count(b'"id": "Q.'), 2, "both sent to the child")
        h.run_writer = synchronous
        h.settle()  # the child answers; Q.2 and Q.3 wait for the commit of Q.1
        self.assertNoResult(later[0])
        commits[0].callback(None)
        for reply in (first, *later):
            self.successResultOf(reply)
        self.assertEqual([s["id"] for s in h.active()], ["Q.1", "Q.2", "Q.3"])
        self.assertLess(h.stored("Q.2")["seq"], h.stored("Q.3")["seq"])

    def test_the_answers_of_one_read_of_the_child_go_in_one_transaction(self) -> None:
        h = Harness(self)
        batches: list[list[str]] = []

        def counted(function: Any, *args: Any) -> Deferred[Any]:
            inserts = [change.daq_id for change in args[0] if isinstance(change, Insert)]
            if inserts:
                batches.append(inserts)
            return synchronous(function, *args)

        commits = self.held_commits(h)
        h.manager.queue_daq(specification("T.1", "/missing.fits"))
        replies = [h.manager.queue_daq(specification(f"T.{n}", "/missing.fits"))
                   for n in (2, 3, 4)]  # fmt: skip
        h.run_writer = counted
        commits[0].callback(None)  # T.1 is stored: the store is idle when the child answers
        h.settle()
        for reply in replies:
            self.successResultOf(reply)
        self.assertEqual(batches, [["T.2", "T.3", "T.4"]])

    def test_daqs_queued_together_are_logged_in_one_line(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def queued() -> list[tuple[str, Any]]:
            lines = [(formatEvent(e), e.get("daq_id", e.get("daq_ids"))) for e in events
                     if e.get("log_namespace") == "dpmd.daq.admission.intake"]  # fmt: skip
            events.clear()
            return lines

        h = Harness(self)
        self.successResultOf(h.manager.queue_daq(specification("L.1", "/missing.fits")))
        self.assertEqual(queued(), [], "the line waits for others to share it")
        h.reactor.advance(QueuedLog.WITHIN)
        self.assertEqual(queued(), [("DAQ L.1 queued", "L.1")])
        h.reactor.advance(QueuedLog.WITHIN)
        self.assertEqual(queued(), [], "once only")

        commits = self.held_commits(h)
        ids = [f"L.{n}" for n in range(2, 2 + 1 + QueuedLog.PER_LINE + 2)]
        replies = [h.manager.queue_daq(specification(name, "/missing.fits")) for name in ids]
        h.run_writer = synchronous
        h.settle()  # L.2 was checked at once; the child answers the others in one read
        h.reactor.advance(QueuedLog.WITHIN)
        self.assertEqual(queued(), [], "nothing is logged before it is stored")
        commits[0].callback(None)  # L.2 is stored, then the others in one transaction
        for reply in replies:
            self.successResultOf(reply)
        self.assertEqual(queued(), [
            (f"{QueuedLog.PER_LINE} DAQs queued: {', '.join(ids[:QueuedLog.PER_LINE])}",
             ids[: QueuedLog.PER_LINE]),
        ], "a full line at once")  # fmt: skip
        h.reactor.advance(QueuedLog.WITHIN)
        rest = ids[QueuedLog.PER_LINE :]
        self.assertEqual(queued(), [(f"3 DAQs queued: {', '.join(rest)}", rest)])

    def test_the_queued_daqs_that_wait_for_their_line_get_it_at_stop(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        h = Harness(self)
        self.successResultOf(h.manager.queue_daq(specification("S.1", "/missing.fits")))
        self.successResultOf(h.manager.stop())
        self.assertIn("DAQ S.1 queued", [formatEvent(e) for e in events])
        self.assertEqual(h.reactor.getDelayedCalls(), [], "no timer left behind")

    def test_the_child_refuses_what_the_reactor_would_refuse(self) -> None:
        h = Harness(self)
        commits = self.held_commits(h)
        h.manager.queue_daq(specification("Q.4", "/missing.fits"))
        bad = h.manager.queue_daq({**specification("Q.5"), "target": {"fileId": "a/b"}})
        h.settle()
        commits[0].callback(None)
        error = self.failureResultOf(bad, DaqError).value
        self.assertIn("invalid specification", error.message)
        self.assertIn("fileId", error.message)
        self.assertEqual(error.daq_id, "Q.5")

    def test_until_the_child_is_ready_arrivals_during_a_commit_are_checked_here(self) -> None:
        h = Harness(self)
        h.manager.prepare_admission()  # started, not yet ready: it has not said so
        [child] = self.vetting(h)
        commits = self.held_commits(h)
        replies = [h.manager.queue_daq(specification(f"R.{n}", "/missing.fits"))
                   for n in range(3)]  # fmt: skip
        self.assertEqual(child.stdin, b"", "none waits for the child to start")
        h.run_writer = synchronous
        commits[0].callback(None)
        h.settle()
        self.assertEqual([self.successResultOf(reply).id for reply in replies],
                         ["R.0", "R.1", "R.2"])  # fmt: skip
        big = specification("R.3", "/missing.fits")
        big["sources"][0]["location"] = "/missing/" + "x" * 70_000 + ".fits"
        commits = self.held_commits(h)
        h.manager.queue_daq(specification("R.4", "/missing.fits"))
        h.manager.queue_daq(big)
        self.assertIn(b'"id": "R.3"', child.stdin, "too big for the reactor: it waits")

    def test_when_the_child_dies_its_requests_fail_and_the_next_one_starts_a_new_child(
        self,
    ) -> None:
        h = self.admitting(Harness(self))
        commits = self.held_commits(h)
        h.manager.queue_daq(specification("Q.6", "/missing.fits"))
        lost = h.manager.queue_daq(specification("Q.7", "/missing.fits"))
        [child] = self.vetting(h)
        child.killed(signal.SIGKILL)
        h.reactor.advance(0)  # what the child held is handed over at the end of the turn
        error = self.failureResultOf(lost, DaqError).value
        self.assertIn("the validator process ended (killed by SIGKILL); send it again",
                      error.message)  # fmt: skip
        self.assertEqual(error.daq_id, "Q.7")
        again = h.manager.queue_daq(specification("Q.7", "/missing.fits"))
        self.assertEqual(len(self.vetting(h)), 1, "a new child")
        h.settle()
        commits[0].callback(None)
        h.run_writer = synchronous
        commits[1].callback(None)
        self.assertEqual(self.successResultOf(again).id, "Q.7")

    def test_a_large_specification_is_checked_by_the_child_even_with_nothing_ahead(
        self,
    ) -> None:
        h = Harness(self)
        keywords = [{"type": "valueKeyword", "name": f"K{n}", "value": "x" * 40}
                    for n in range(1200)]  # fmt: skip
        spec = specification("Q.8", "/missing.fits")
        spec["sources"][0]["keywords"] = keywords
        self.assertGreater(len(json.dumps(spec)), intake.INLINE_VALIDATION)
        reply = h.manager.queue_daq(spec)
        self.assertNoResult(reply)
        self.assertEqual(len(self.vetting(h)), 1)
        h.settle()
        self.assertEqual(self.successResultOf(reply).id, "Q.8")


class HostileSpecificationTests(SynchronousTestCase):
    """Whatever QueueDaq is given, the answer is a DaqException naming what was wrong."""

    def test_documents_without_a_json_text_are_refused(self) -> None:
        h = Harness(self)
        deep: dict[str, Any] = {}
        for _ in range(100_000):
            deep = {"a": deep}
        cases = [
            ("\udcff", "cannot be encoded as UTF-8"),
            ({**specification("S.1"), "id": "S.\udcff"}, "cannot be encoded as UTF-8"),
            ({**specification("S.2"), "nan": float("nan")}, "NaN or infinity"),
            (deep, "nested too deeply"),
        ]
        for document, named in cases:
            with self.subTest(named):
                message = h.refused(h.manager.queue_daq(document))
                self.assertIn("invalid specification", message)
                self.assertIn(named, message)
                message.encode()  # the refusal itself can always be sent
        self.assertEqual(h.active(), [])


class ProvenanceTests(SynchronousTestCase):
    def test_provenance_is_kept_with_the_daq_for_ever(self) -> None:
        h = Harness(self)
        h.queue(specification("P.1", h.source("a.fits")))
        self.assertIn("not merged", h.refused(h.manager.get_daq_provenance("P.1")))
        h.finish_merge()
        [entry] = h.answer(h.manager.get_daq_provenance("P.1"))
        self.assertEqual((entry["keyword"], entry["source"]), ("SIMPLE", "(dpmd-merge)"))
        self.assertEqual(h.stored("P.1")["archived"], True)
        self.assertEqual(h.refused(h.manager.get_daq_provenance("NOPE")), "unknown DAQ id 'NOPE'")


class TimelineTests(SynchronousTestCase):
    def test_the_night_in_stages(self) -> None:
        h = Harness(self)
        start = h.reactor.seconds()
        h.queue(specification("N.1", h.source("a.fits")))
        h.reactor.advance(5)
        h.finish_merge()
        h.queue(specification("N.2", "/missing.fits"))
        timeline = h.answer(h.manager.get_timeline(None, None, 100))
        self.assertFalse(timeline["truncated"])
        first, second = timeline["daqs"]
        self.assertEqual((first["id"], first["substate"]), ("N.1", "Completed"))
        merging = first["stages"]["merging"]
        self.assertEqual(merging["ended_at"] - merging["started_at"], 5)
        self.assertEqual(first["stages"]["collecting"]["bytes"], len(FITS_BLOCK))
        self.assertEqual(first["stages"]["merging"]["bytes"], len(FITS_BLOCK))
        self.assertEqual(first["stages"]["releasing"]["bytes"], len(FITS_BLOCK), "one receiver")
        self.assertEqual((second["id"], second["substate"]), ("N.2", "Collecting"))
        self.assertIn("does not exist", second["stages"]["collecting"]["last_error"])
        window = h.answer(h.manager.get_timeline(start + 6, None, 100))
        self.assertEqual([d["id"] for d in window["daqs"]], ["N.2"], "N.1 finished before")
        limited = h.answer(h.manager.get_timeline(None, None, 1))
        self.assertEqual((len(limited["daqs"]), limited["truncated"]), (1, True))
