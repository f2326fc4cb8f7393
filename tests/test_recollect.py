"""``RetryMergeDaq`` after a merge that failed for a source's sake collects that source again.

A source broken when it was collected (the merger cannot read it: exit 4), or
changed between collection and merge (``SourceChanged``), is taken as it is
now when the operator retries: the DAQ goes back to ``Collecting`` for the
sources concerned, their new checksums replace the old (which the history,
the source's entry and the release manifest keep), and the merge runs again.
A change that nobody asked for is still refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from dpmd.model import DaqSubState
from dpmd.testing import FakeProcess, synchronous
from tests.daqharness import FITS_BLOCK, Harness, specification

S = DaqSubState
RESTORED = FITS_BLOCK * 2
"""The source as the operator put it back (the harness's merger is played, so any FITS
start will do; what matters is that its bytes differ from what was collected)."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def errors(h: Harness, daq_id: str) -> dict[str, dict[str, Any]]:
    return {a["category"]: a for a in h.internal(daq_id)["status"]["alerts"]
            if a["severity"] == "Error"}  # fmt: skip


class AfterTheMergerCouldNotReadASourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)
        self.source = Path(self.h.source("a.fits"))
        self.collected = sha256(self.source)
        self.h.queue(specification("RC.1", str(self.source)))
        self.h.fail_merge(4, b"dpmd-merge: a.fits: truncated FITS file")

    def restore_and_retry(self) -> None:
        """The operator puts the right file back and retries; the merge succeeds."""
        self.source.write_bytes(RESTORED)
        self.successResultOf(self.h.manager.retry_merge_daq("RC.1"))
        self.h.settle()
        self.h.finish_merge()

    def test_the_alert_says_that_a_retry_collects_again(self) -> None:
        alert = errors(self.h, "RC.1")["MergeError"]
        self.assertTrue(alert["terminal"], "a retry without fixing the file cannot help")
        self.assertIn("fix the source, then RetryMergeDaq collects the sources again",
                      alert["description"])  # fmt: skip
        self.assertEqual(self.h.stored("RC.1")["record"]["recollect"], ["src0"])

    def test_the_retry_collects_the_restored_file_and_completes(self) -> None:
        h = self.h
        started_at = h.internal("RC.1")["detail"]["started_at"]
        self.source.write_bytes(RESTORED)
        h.notifications()  # what was published so far
        self.successResultOf(h.manager.retry_merge_daq("RC.1"))
        h.settle()
        seen = h.substates()
        self.assertEqual([s for n, s in enumerate(seen) if n == 0 or seen[n - 1] != s],
                         ["Collecting", "Merging"], "back to Collecting, then Merging again")
        h.finish_merge()
        self.assertEqual(h.status("RC.1").substate, S.Completed)
        detail = h.internal("RC.1")["detail"]
        [entry] = detail["sources"]
        self.assertEqual((entry["sha256"], entry["bytes"]), (sha256(self.source), len(RESTORED)))
        self.assertEqual(entry["collections"], 2)
        self.assertEqual([earlier["sha256"] for earlier in entry["superseded"]], [self.collected])
        self.assertEqual(detail["stages"]["collecting"]["attempts"], 2)
        self.assertEqual(detail["stages"]["merging"]["attempts"], 2)
        self.assertEqual(detail["started_at"], started_at, "the DAQ started once")
        self.assertNotIn("recollect", h.stored("RC.1")["record"], "done: nothing left to collect")

    def test_the_history_keeps_both_checksums(self) -> None:
        h = self.h
        self.restore_and_retry()
        history = h.internal("RC.1")["detail"]["history"]
        events = [entry["event"] for entry in history]
        self.assertEqual(events, ["queue", "start", "collected", "recollect", "collected", "merged",
                                  "released"])  # fmt: skip
        again = history[3]
        self.assertEqual(again["substate"], "Collecting")
        self.assertIn("collecting src0 again", again["message"])
        self.assertEqual(history[4]["recollected"],
                         {"src0": {"before": self.collected, "after": sha256(self.source)}})

    def test_the_release_manifest_names_the_restored_source(self) -> None:
        h = self.h
        self.restore_and_retry()
        manifest = json.loads((h.config.release_dir / "RC.1.fits.json").read_bytes())
        [entry] = manifest["sources"]
        self.assertEqual((entry["sha256"], entry["size"], entry["collections"]),
                         (sha256(self.source), len(RESTORED), 2))  # fmt: skip
        self.assertEqual(entry["superseded"], [
            {"size": len(FITS_BLOCK), "mtime": entry["superseded"][0]["mtime"],
             "sha256": self.collected}])  # fmt: skip

    def test_a_file_still_missing_at_the_retry_waits_in_collecting(self) -> None:
        h = self.h
        self.source.unlink()
        self.successResultOf(h.manager.retry_merge_daq("RC.1"))
        h.settle()
        self.assertEqual(h.status("RC.1").substate, S.Collecting)
        alert = errors(h, "RC.1")["SourceFileCollectionError"]
        self.assertFalse(alert["terminal"], "the file may still come")
        self.source.write_bytes(RESTORED)
        self.successResultOf(h.manager.retry_merge_daq("RC.1"))
        h.settle()
        h.finish_merge()
        [entry] = h.internal("RC.1")["detail"]["sources"]
        self.assertEqual((entry["sha256"], entry["collections"]), (sha256(self.source), 2))

    def test_a_merge_that_failed_otherwise_is_retried_without_collecting(self) -> None:
        h = Harness(self)
        h.queue(specification("RC.2", h.source("b.fits")))
        h.fail_merge(5, b"disk full")
        self.assertNotIn("recollect", h.stored("RC.2")["record"])
        h.notifications()  # what was published so far
        self.successResultOf(h.manager.retry_merge_daq("RC.2"))
        h.settle()
        self.assertEqual(set(h.substates()), {"Merging"})
        self.assertEqual(h.internal("RC.2")["detail"]["stages"]["collecting"]["attempts"], 1)


class AfterASourceChangedTests(SynchronousTestCase):
    def rewrite_before_the_merge(self, h: Harness, source: Path, content: bytes) -> None:
        """The next check before a merge finds ``source`` rewritten (an instrument wrote it
        again, or the operator put the right one back)."""
        armed = [True]

        def rewrite_first(function: Any, *args: Any) -> Any:
            if armed[0] and getattr(function, "__name__", "") == "changed_sources":
                armed[0] = False
                source.write_bytes(content)
            return synchronous(function, *args)

        h.run_blocking = rewrite_first

    def test_a_change_nobody_asked_for_is_refused_and_a_retry_takes_it(self) -> None:
        h = Harness(self)
        source = Path(h.source("a.fits"))
        collected = sha256(source)
        self.rewrite_before_the_merge(h, source, RESTORED)
        h.queue(specification("SC.1", str(source)))
        alert = errors(h, "SC.1")["SourceChanged"]
        self.assertFalse(alert["terminal"], "a retry collects it again: it can help")
        self.assertIn("call RetryMergeDaq: the retry collects it again", alert["description"])
        self.assertEqual(h.reactor.running_processes(), [], "no product is made of it")
        self.successResultOf(h.manager.retry_merge_daq("SC.1"))
        h.settle()
        self.assertEqual(h.status("SC.1").alerts, ())
        h.finish_merge()
        self.assertEqual(h.status("SC.1").substate, S.Completed)
        [entry] = h.internal("SC.1")["detail"]["sources"]
        self.assertEqual((entry["sha256"], entry["collections"]), (sha256(source), 2))
        self.assertEqual(entry["superseded"][0]["sha256"], collected)

    def test_only_the_changed_source_is_collected_again(self) -> None:
        h = Harness(self)
        first, second = Path(h.source("a.fits")), Path(h.source("b.fits"))
        self.rewrite_before_the_merge(h, second, RESTORED)
        h.queue(specification("SC.2", str(first), str(second)))
        self.assertEqual(list(errors(h, "SC.2")), ["SourceChanged"])
        before = {e["name"]: e for e in h.internal("SC.2")["detail"]["sources"]}
        hashed: list[str] = []

        def count_hashes(function: Any, *args: Any) -> Any:
            if getattr(function, "__name__", "") == "checksum_file":
                hashed.append(str(args[1]))
            return synchronous(function, *args)

        h.run_blocking = count_hashes
        self.successResultOf(h.manager.retry_merge_daq("SC.2"))
        h.settle()
        self.assertEqual(hashed, [str(second)], "the unchanged source is not read again")
        after = {e["name"]: e for e in h.internal("SC.2")["detail"]["sources"]}
        self.assertEqual(after["src0"], before["src0"])
        self.assertEqual(after["src1"]["collections"], 2)
        self.assertEqual([e["name"] for e in h.internal("SC.2")["detail"]["sources"]],
                         ["src0", "src1"], "the specification's order is kept")  # fmt: skip

    def test_after_the_retry_an_unasked_change_of_another_source_is_still_caught(self) -> None:
        h = Harness(self)
        first, second = Path(h.source("a.fits")), Path(h.source("b.fits"))
        self.rewrite_before_the_merge(h, second, RESTORED)
        h.queue(specification("SC.3", str(first), str(second)))
        self.successResultOf(h.manager.retry_merge_daq("SC.3"))
        self.rewrite_before_the_merge(h, first, RESTORED)
        h.settle()
        alert = errors(h, "SC.3")["SourceChanged"]
        self.assertEqual(alert["key"], "src0")
        self.assertEqual(h.reactor.running_processes(), [], "no product is made of it")

    def test_a_retry_is_refused_while_nothing_failed(self) -> None:
        h = Harness(self)
        h.queue(specification("SC.4", h.source("a.fits")))
        message = h.refused(h.manager.retry_merge_daq("SC.4"))
        self.assertIn("without a MergeError or SourceChanged alert", message)


class RemoteSourceTests(SynchronousTestCase):
    """A remote source is transferred again, whole, when the merger could not read it."""

    def setUp(self) -> None:
        self.h = Harness(self, **{"transfer.retries": 0})

    def rsyncs(self) -> list[FakeProcess]:
        return [p for p in self.h.reactor.running_processes() if p.argv[0] == "rsync"]

    def land(self, content: bytes) -> Path:
        [process] = self.rsyncs()
        copy = Path(process.argv[-1])
        copy.write_bytes(content)
        process.exit(0)
        self.h.settle()
        return copy

    def test_the_retry_transfers_the_source_again_from_scratch(self) -> None:
        h = self.h
        h.queue(specification("RR.1", "fcs:/d/a.fits"))
        copy = self.land(FITS_BLOCK)
        final = copy.with_name("src0.fits")
        self.assertTrue(final.exists())
        h.fail_merge(4, b"dpmd-merge: truncated")
        self.successResultOf(h.manager.retry_merge_daq("RR.1"))
        h.settle()
        [again] = self.rsyncs()
        self.assertFalse(final.exists(), "the old copy is gone: rsync cannot keep it")
        self.assertFalse(Path(again.argv[-1]).exists(), "and no partial copy is resumed")
        self.land(RESTORED)
        h.finish_merge()
        self.assertEqual(h.status("RR.1").substate, S.Completed)
        [entry] = h.internal("RR.1")["detail"]["sources"]
        self.assertEqual((entry["sha256"], entry["collections"]),
                         (hashlib.sha256(RESTORED).hexdigest(), 2))  # fmt: skip


class RestartTests(SynchronousTestCase):
    def test_a_restart_during_the_re_collection_runs_it_again(self) -> None:
        old = Harness(self)
        source = Path(old.source("a.fits"))
        old.queue(specification("RS.1", str(source)))
        old.fail_merge(4, b"truncated")
        source.write_bytes(RESTORED)
        held: list[Any] = []

        def hold_hashing(function: Any, *args: Any) -> Any:
            if getattr(function, "__name__", "") == "checksum_file":
                held.append(Deferred())
                return held[-1]  # the server dies while it hashes
            return synchronous(function, *args)

        old.run_blocking = hold_hashing
        self.successResultOf(old.manager.retry_merge_daq("RS.1"))
        old.settle()
        self.assertEqual((old.status("RS.1").substate, len(held)), (S.Collecting, 1))
        new = Harness(self, root=old.root)
        new.settle()
        new.finish_merge()
        self.assertEqual(new.status("RS.1").substate, S.Completed)
        [entry] = new.internal("RS.1")["detail"]["sources"]
        self.assertEqual((entry["sha256"], entry["collections"]), (sha256(source), 2))
        self.assertEqual(sorted(p.name for p in new.config.release_dir.iterdir()),
                         ["RS.1.fits", "RS.1.fits.json"])  # fmt: skip
