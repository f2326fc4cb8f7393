"""No silent waits: the stall watchdog, alerts that say whether retrying helps, programs
that cannot be run named as such."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from dpmd.daq.running.watchdog import Watchdog
from dpmd.stages.merge import changed_sources
from dpmd.testing import synchronous
from dpmd.workers import ProcessRunner
from tests.daqharness import FITS_BLOCK, Harness, specification
from tests.fitsfactory import write_raw_source
from tests.rpcclient import start_server

WATCHED = {"watchdog.stall": 10, "watchdog.kill": 30, "watchdog.rate": 1 << 40}


def alerts(h: Harness, daq_id: str) -> dict[str, dict[str, Any]]:
    return {a["category"]: a for a in h.internal(daq_id)["status"]["alerts"]}


def leads_its_group(pid: int) -> bool:
    """The child's shim has made its process group (a signal to the group reaches it)."""
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


class StallTests(SynchronousTestCase):
    def test_a_silent_merger_is_warned_about_then_stopped_and_retried(self) -> None:
        h = Harness(self, **WATCHED)
        h.queue(specification("W.1", h.source("a.fits")))
        merger = h.merger()
        h.reactor.advance(9)
        self.assertEqual(alerts(h, "W.1"), {})
        h.reactor.advance(1)
        stalled = alerts(h, "W.1")["StageStalled"]
        self.assertEqual((stalled["severity"], stalled["key"]), ("Warning", "merging"))
        self.assertIn(f"merge (pid {merger.pid}) has been silent for 10 s", stalled["description"])
        self.assertNotIn("terminal", stalled, "only Error alerts say what helps")

        merger.write_json({"type": "heartbeat"})
        self.assertEqual(alerts(h, "W.1"), {}, "it clears itself when the child speaks again")
        h.reactor.advance(29)
        self.assertEqual(h.terminate_signals(merger), [])
        h.reactor.advance(1)
        self.assertIn(signal.SIGCONT, merger.signals)
        self.assertEqual(h.terminate_signals(merger), [signal.SIGTERM])
        merger.killed(signal.SIGTERM)
        h.settle()
        error = alerts(h, "W.1")["MergeError"]
        self.assertIn("stalled: no output for 30 s", error["description"])
        self.assertEqual((error["terminal"], error["attempts"]), (False, 1))
        self.assertNotIn("StageStalled", alerts(h, "W.1"))

        h.test.successResultOf(h.manager.retry_merge_daq("W.1"))
        h.settle()
        h.finish_merge()
        self.assertEqual(h.status("W.1").substate.value, "Completed")
        self.assertEqual(h.internal("W.1")["detail"]["stages"]["merging"]["attempts"], 2)

    def test_a_stopped_child_that_ignores_sigterm_is_killed(self) -> None:
        h = Harness(self, **WATCHED)
        h.queue(specification("W.2", h.source("a.fits")))
        merger = h.merger()
        h.reactor.advance(30)
        h.reactor.advance(h.config.shutdown_timeout)
        self.assertEqual(h.terminate_signals(merger), [signal.SIGTERM, signal.SIGKILL])

    def test_budgets_grow_with_the_input(self) -> None:
        h = Harness(self, **{**WATCHED, "watchdog.rate": 1000})
        big = h.root / "data" / "big.fits"
        big.parent.mkdir(parents=True, exist_ok=True)
        big.write_bytes(FITS_BLOCK * 10)  # 28,800 bytes at 1,000 bytes/s: 28.8 s more
        h.queue(specification("W.3", str(big)))
        h.reactor.advance(38)
        self.assertEqual(alerts(h, "W.3"), {})
        h.reactor.advance(1)
        self.assertIn("StageStalled", alerts(h, "W.3"))


class TerminalTests(SynchronousTestCase):
    """Every Error alert says whether waiting or a retry can help, and how often it ran."""

    def error_of(self, h: Harness, daq_id: str) -> dict[str, Any]:
        [alert] = [a for a in h.internal(daq_id)["status"]["alerts"] if a["severity"] == "Error"]
        return alert

    def test_collection(self) -> None:
        h = Harness(self, **{"limits.daq": 2})
        not_fits = h.root / "data" / "notes.txt"
        not_fits.parent.mkdir(parents=True, exist_ok=True)
        not_fits.write_text("hello")
        h.queue(specification("T.1", str(h.root / "data" / "late.fits")))
        h.queue(specification("T.2", str(not_fits)))
        self.assertEqual((self.error_of(h, "T.1")["terminal"], self.error_of(h, "T.1")["attempts"]),
                         (False, 1), "a missing file may still come")  # fmt: skip
        self.assertTrue(self.error_of(h, "T.2")["terminal"], "a text file will not become FITS")

    def test_merge_exit_statuses(self) -> None:
        for code, terminal in ((3, True), (4, True), (5, False), (1, False)):
            with self.subTest(code=code):
                h = Harness(self)
                h.queue(specification(f"M.{code}", h.source("a.fits")))
                h.fail_merge(code, b"something")
                self.assertEqual(self.error_of(h, f"M.{code}")["terminal"], terminal)

    def test_release_conflict_is_terminal(self) -> None:
        h = Harness(self)
        h.config.release_dir.mkdir(parents=True)
        (h.config.release_dir / "R.1.fits").write_bytes(b"someone else's")
        h.queue(specification("R.1", h.source("a.fits")))
        h.finish_merge()
        self.assertTrue(self.error_of(h, "R.1")["terminal"])

    def test_a_merger_crash_names_an_incident_not_a_traceback(self) -> None:
        h = Harness(self)
        h.queue(specification("C.1", h.source("a.fits")))
        h.fail_merge(1, b"Traceback (most recent call last):\n  File x\nKeyError: 'boom'")
        alert = self.error_of(h, "C.1")
        self.assertIn("failed unexpectedly (incident ", alert["description"])
        self.assertNotIn("Traceback", alert["description"])
        self.assertNotIn("KeyError", alert["description"])
        self.assertFalse(alert["terminal"])


class RealChildTests(TestCase):
    """Real processes: a stopped merger, a merger that says nothing, a missing rsync."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()

    @inlineCallbacks
    def poll(self, caller: Any, daq_id: str, condition: Any, seconds: float = 30) -> Any:
        for _ in range(int(seconds / 0.02)):
            internal = yield caller.call("/daq/GetInternalDaqStatus", daq_id)
            if condition(internal):
                return internal
            yield deferLater(reactor, 0.02, lambda: None)
        raise AssertionError(f"{daq_id}: condition never met: {internal}")

    def spec(self, daq_id: str, *locations: str) -> dict[str, Any]:
        return specification(daq_id, *locations)

    @inlineCallbacks
    def stopped_merger(self, daq_id: str, kill: float) -> Any:
        """A server, a DAQ of a 96 MiB source queued on it, and its merger SIGSTOPped once
        it runs: ``(service, caller, source path, internal status then)``."""
        big = write_raw_source(str(self.root / "big.fits"), 96 << 20, extensions=2)
        service, caller = yield start_server(
            self, self.root, **{"watchdog.stall": 1, "watchdog.kill": kill,
                                "watchdog.rate": 1 << 40, "shutdown_timeout": 2})  # fmt: skip
        yield caller.call("/daq/QueueDaq", self.spec(daq_id, big))
        internal = yield self.poll(caller, daq_id, lambda i: any(
            leads_its_group(p["pid"]) for p in i["detail"]["processes"]), 60)  # fmt: skip
        os.killpg(internal["detail"]["processes"][0]["pid"], signal.SIGSTOP)
        return service, caller, big, internal

    @inlineCallbacks
    def test_a_source_rewritten_with_its_size_and_time_kept_is_refused(self) -> None:
        """Collected, merge stopped (stalled); the file's bytes change, its size and mtime
        are put back; the retried merge finds it by the checksum: SourceChanged."""
        service, caller, big, internal = yield self.stopped_merger("SUM.1", kill=2)
        [source] = internal["detail"]["sources"]
        with open(big, "rb") as handle:
            self.assertEqual(source["sha256"], hashlib.file_digest(handle, "sha256").hexdigest())
        yield self.poll(caller, "SUM.1", lambda i: i["status"]["error"])
        times = os.stat(big)
        with open(big, "r+b") as handle:  # one byte of the last extension's data
            handle.seek(-1, os.SEEK_END)
            last = handle.read(1)
            handle.seek(-1, os.SEEK_END)
            handle.write(b"\x01" if last != b"\x01" else b"\x02")
        os.utime(big, ns=(times.st_atime_ns, times.st_mtime_ns))
        self.assertEqual((os.stat(big).st_size, os.stat(big).st_mtime), (source["bytes"],
                                                                          source["mtime"]))
        yield caller.call("/daq/RetryMergeDaq", "SUM.1")
        refused = yield self.poll(caller, "SUM.1", lambda i: any(
            a["category"] == "SourceChanged" for a in i["status"]["alerts"]))  # fmt: skip
        [alert] = refused["status"]["alerts"]
        self.assertEqual((alert["key"], alert["terminal"]), ("src0", False))
        self.assertIn("sha256 checksum is now", alert["description"])
        self.assertEqual(refused["detail"]["processes"], [], "no merger ran")
        del service

    @inlineCallbacks
    def test_a_sigstopped_merger_is_found_stopped_and_retried(self) -> None:
        service, caller, _, internal = yield self.stopped_merger("STOP.1", kill=3)
        merger = internal["detail"]["processes"][0]["pid"]
        stalled = yield self.poll(caller, "STOP.1", lambda i: any(
            a["category"] == "StageStalled" for a in i["status"]["alerts"]))
        self.assertIn(f"(pid {merger})", stalled["status"]["alerts"][0]["description"])
        failed = yield self.poll(caller, "STOP.1", lambda i: i["status"]["error"])
        [error] = failed["status"]["alerts"]
        self.assertIn("stalled", error["description"])
        self.assertEqual((error["terminal"], error["attempts"]), (False, 1))
        yield caller.call("/daq/RetryMergeDaq", "STOP.1")
        final = yield caller.wait_for("STOP.1", "Completed", timeout=120)
        self.assertFalse(final["error"])
        del service

    @inlineCallbacks
    def test_a_merger_that_prints_nothing_is_stopped(self) -> None:
        fake = self.root / "python-with-a-silent-merger"
        fake.write_text(f'#!/bin/sh\nif [ "$2" = dpmd.merge ]; then exec sleep 600; fi\n'
                        f'exec {sys.executable} "$@"\n')  # fmt: skip
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
        source = self.root / "a.fits"
        source.write_bytes(FITS_BLOCK)
        service, caller = yield start_server(
            self, self.root, **{"watchdog.stall": 0.5, "watchdog.kill": 1.5,
                                "python": str(fake), "shutdown_timeout": 1})  # fmt: skip
        yield caller.call("/daq/QueueDaq", self.spec("SILENT.1", str(source)))
        failed = yield self.poll(caller, "SILENT.1", lambda i: i["status"]["error"])
        [error] = failed["status"]["alerts"]
        self.assertEqual(error["category"], "MergeError")
        self.assertIn("stalled", error["description"])
        del service

    @inlineCallbacks
    def test_a_missing_rsync_is_named_terminal_and_not_retried(self) -> None:
        service, caller = yield start_server(
            self, self.root, **{"transfer.rsync": "rsync-not-installed",
                                "transfer.retry_delay": 60})  # fmt: skip
        yield caller.call("/daq/QueueDaq", self.spec("NORSYNC.1", "dcs.example:/d/a.fits"))
        failed = yield self.poll(caller, "NORSYNC.1", lambda i: i["status"]["error"], 20)
        [error] = failed["status"]["alerts"]
        self.assertIn("rsync-not-installed: command not found — install rsync or set "
                      "transfer.rsync", error["description"])  # fmt: skip
        self.assertNotIn("Traceback", error["description"])
        self.assertEqual((error["terminal"], error["attempts"]), (True, 1))
        del service


class ReserveTests(SynchronousTestCase):
    def test_below_the_reserve_no_stage_starts_until_space_returns(self) -> None:
        h = Harness(self)
        h.free_bytes = 10 << 30  # 10 GiB of 2 TiB: below 5 %
        reply = h.queue(specification("S.1", h.source("a.fits")))
        self.assertFalse(reply.error, "QueueDaq still accepts")
        [low] = [a for a in h.internal("S.1")["status"]["alerts"]]
        self.assertEqual((low["category"], low["severity"]), ("StorageLow", "Warning"))
        self.assertIn(f"{10 << 30} bytes are free", low["description"])
        self.assertIn(f"reserve of {int((2 << 40) * 0.05)} bytes", low["description"])
        self.assertEqual(h.reactor.running_processes(), [], "no stage started")
        h.reactor.advance(10)
        self.assertEqual(h.reactor.running_processes(), [])
        h.free_bytes = 1 << 40
        h.reactor.advance(2)
        h.settle()
        self.assertEqual(h.internal("S.1")["status"]["alerts"], [])
        h.finish_merge()
        self.assertEqual(h.status("S.1").substate.value, "Completed")

    def test_a_reserve_in_bytes(self) -> None:
        h = Harness(self, **{"storage.reserve": 1 << 30})
        h.free_bytes = (1 << 30) - 4096
        h.queue(specification("S.2", h.source("a.fits")))
        self.assertIn("StorageLow", alerts(h, "S.2"))


class SourceChangedTests(SynchronousTestCase):
    def test_a_source_rewritten_between_collection_and_merge_is_refused(self) -> None:
        h = Harness(self)
        source = Path(h.source("a.fits"))

        def rewrite_first(function: Any, *args: Any) -> Any:
            if getattr(function, "__name__", "") == "changed_sources":
                source.write_bytes(FITS_BLOCK * 2)  # the instrument wrote it again
            return synchronous(function, *args)

        h.run_blocking = rewrite_first
        h.queue(specification("SC.1", str(source)))
        [alert] = h.internal("SC.1")["status"]["alerts"]
        self.assertEqual((alert["category"], alert["key"], alert["terminal"]),
                         ("SourceChanged", "src0", False))  # fmt: skip
        self.assertIn(f"{len(FITS_BLOCK)} bytes", alert["description"])
        self.assertIn(f"now {2 * len(FITS_BLOCK)} bytes", alert["description"])
        self.assertEqual(h.reactor.running_processes(), [], "the merger never read it")


    def test_a_rewrite_that_keeps_size_and_time_is_found_by_the_checksum(self) -> None:
        h = Harness(self)
        source = Path(h.source("a.fits"))
        original = source.read_bytes()

        def rewrite_first(function: Any, *args: Any) -> Any:
            if getattr(function, "__name__", "") == "changed_sources":
                times = source.stat()
                source.write_bytes(original[:-1] + b"!")  # one byte, the same length
                os.utime(source, ns=(times.st_atime_ns, times.st_mtime_ns))
            return synchronous(function, *args)

        h.run_blocking = rewrite_first
        h.queue(specification("SC.2", str(source)))
        [alert] = h.internal("SC.2")["status"]["alerts"]
        self.assertEqual((alert["category"], alert["key"], alert["terminal"]),
                         ("SourceChanged", "src0", False))  # fmt: skip
        self.assertIn("the same size and modification time, but its sha256 checksum is now",
                      alert["description"])  # fmt: skip
        self.assertEqual(h.reactor.running_processes(), [], "the merger never read it")

    def test_collection_records_the_checksum(self) -> None:
        h = Harness(self)
        source = Path(h.source("a.fits"))
        h.queue(specification("SC.3", str(source)))
        [entry] = h.internal("SC.3")["detail"]["sources"]
        self.assertEqual(entry["sha256"], hashlib.sha256(source.read_bytes()).hexdigest())
        self.assertEqual((entry["inode"], entry["ctime_ns"]),
                         (source.stat().st_ino, source.stat().st_ctime_ns))  # fmt: skip


class ChangedSourcesTests(SynchronousTestCase):
    """The re-check before a merge reads a file again only when the kernel says it may differ."""

    def setUp(self) -> None:
        self.path = Path(self.mktemp())
        self.path.write_bytes(FITS_BLOCK)
        info = self.path.stat()
        self.entry = {"name": "s", "local_path": str(self.path), "bytes": info.st_size,
                      "mtime": info.st_mtime, "ctime_ns": info.st_ctime_ns,
                      "inode": info.st_ino, "sha256": "0" * 64}  # fmt: skip

    def problems(self, **changes: Any) -> list[str]:
        return [problem.description for problem in changed_sources(({**self.entry, **changes},))]

    def test_an_untouched_file_is_not_read_again(self) -> None:
        """Its recorded checksum is wrong on purpose: only a read would notice."""
        hashed_long_after = self.path.stat().st_ctime_ns / 1e9 + 60
        self.assertEqual(self.problems(hashed_at=hashed_long_after), [])

    def test_a_file_changed_close_to_its_hashing_is_read_again(self) -> None:
        """The kernel's clock ticks coarsely: a change in the same tick leaves ctime as it was."""
        [problem] = self.problems(hashed_at=self.path.stat().st_ctime_ns / 1e9)
        self.assertIn("sha256 checksum is now", problem)

    def test_a_different_change_time_or_inode_means_read_again(self) -> None:
        right = hashlib.sha256(FITS_BLOCK).hexdigest()
        later = self.path.stat().st_ctime_ns / 1e9 + 60
        self.assertEqual(self.problems(hashed_at=later, ctime_ns=1, sha256=right), [],
                         "a change of metadata only: the content is as collected")  # fmt: skip
        self.assertEqual(len(self.problems(hashed_at=later, inode=1)), 1)

    def test_a_record_of_an_earlier_dpmd_is_checked_by_size_and_time(self) -> None:
        old = {key: value for key, value in self.entry.items()
               if key not in ("sha256", "ctime_ns", "inode")}  # fmt: skip
        self.assertEqual([p.description for p in changed_sources((old,))], [])
        [problem] = [p.description for p in changed_sources(({**old, "bytes": 1},))]
        self.assertIn("1 bytes modified at", problem)


class SilentChildMemoryTests(TestCase):
    """The watchdog's checks see the memory of a child that says nothing."""

    timeout = 20

    @inlineCallbacks
    def test_a_check_samples_the_peak(self) -> None:
        if not Path("/proc/self/status").exists():
            raise SkipTest("the high-water mark is read from /proc")
        ready = Path(self.mktemp())
        program = (f"import time,pathlib\nblock = b'x' * (64 << 20)\n"
                   f"pathlib.Path({str(ready)!r}).touch()\ntime.sleep(30)\n")  # fmt: skip
        child = ProcessRunner(reactor).spawn("silent", [sys.executable, "-S", "-c", program])
        self.addCleanup(lambda: child.terminate(0.1).addCallback(lambda _: None))
        while not ready.exists():
            yield deferLater(reactor, 0.02, lambda: None)
        clock = Clock()
        Watchdog(child, clock, 10, 30, 1, lambda _: succeed(None), lambda: succeed(None))
        self.assertIsNone(child.peak_rss, "it has not spoken")
        clock.advance(10)
        self.assertGreaterEqual(child.peak_rss or 0, 64 << 20)


class MergeSlotProgressTests(SynchronousTestCase):
    """A DAQ's progress says what it waits for: a merge slot only while every one is taken."""

    def test_a_merge_that_waits_for_a_slot_says_how_many_are_taken(self) -> None:
        h = Harness(self, **{"limits.daq": 2, "limits.merge": 1})
        h.queue(specification("MS.1", h.source("a.fits")))
        h.queue(specification("MS.2", h.source("b.fits")))
        self.assertEqual(h.internal("MS.2")["detail"]["progress"]["stage"],
                         "waiting for a merge slot (1 of limits.merge = 1 in use)")  # fmt: skip
        self.assertNotIn("waiting", h.internal("MS.1")["detail"]["progress"]["stage"])

    def test_a_merge_with_a_free_slot_does_not_say_it_waits(self) -> None:
        h = Harness(self)
        held: list[Any] = []

        def hold_the_check(function: Any, *args: Any) -> Any:
            if getattr(function, "__name__", "") == "changed_sources":
                held.append(function)
                return Deferred()
            return synchronous(function, *args)

        h.run_blocking = hold_the_check
        h.queue(specification("MS.3", h.source("a.fits")))
        self.assertEqual(len(held), 1)
        self.assertEqual(h.internal("MS.3")["detail"]["progress"]["stage"], "checking the sources")

    def test_a_failed_merge_leaves_no_progress_behind(self) -> None:
        h = Harness(self)
        source = Path(h.source("a.fits"))

        def rewrite_first(function: Any, *args: Any) -> Any:
            if getattr(function, "__name__", "") == "changed_sources":
                source.write_bytes(FITS_BLOCK * 2)
            return synchronous(function, *args)

        h.run_blocking = rewrite_first
        h.queue(specification("MS.4", str(source)))
        internal = h.internal("MS.4")
        self.assertEqual([a["category"] for a in internal["status"]["alerts"]], ["SourceChanged"])
        self.assertIsNone(internal["detail"]["progress"], "it waits for a retry, not a slot")
