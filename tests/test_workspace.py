"""The workspace on a real file system: what is acknowledged is complete, on disk, and
survives a crash at any point; what cannot be read is set aside, never lost.

Crashes are real: a child process that calls ``write_durably`` is killed with
SIGKILL, either by itself at a chosen point or from outside while it writes.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

import dpmd.workspace
from dpmd.blocking import SerialExecutor
from dpmd.durable import write_durably
from dpmd.workers import child_environment
from dpmd.workspace import (
    SPECIFICATION,
    STATUS,
    DuplicateDaq,
    StoredDaq,
    Workspace,
    encode_record,
)

SPEC = b'{"id": "A", "sources": [], "target": {"fileId": "A"}}\n'


def record(daq_id: str, seq: int = 1, **extra: Any) -> dict[str, Any]:
    return {"format": 1, "id": daq_id, "seq": seq, "substate": "Scheduled", **extra}


def listing(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


class WorkspaceTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute() / "dpm"
        self.workspace = Workspace(self.root)
        self.assertEqual(self.workspace.prepare(), set())

    def spy(self, name: str, before: Callable[..., None]) -> None:
        """Call ``before(*args)`` ahead of each call of ``dpmd.workspace.<name>``."""
        real = getattr(dpmd.workspace, name)

        def spying(*args: Any) -> Any:
            before(*args)
            return real(*args)

        self.patch(dpmd.workspace, name, spying)


class PrepareTests(WorkspaceTestCase):
    def test_prepare_makes_the_folders_and_returns_the_archived_ids(self) -> None:
        """Duplicate checks need every archived id, and only folders are DAQs."""
        self.assertEqual(listing(self.root), ["archive", "corrupt", "daqs", "incoming"])
        (self.root / "archive" / "OLD.1").mkdir()
        (self.root / "archive" / "notes.txt").write_text("an operator's file")
        self.assertEqual(Workspace(self.root).prepare(), {"OLD.1"})

    def test_prepare_drops_unacknowledged_arrivals(self) -> None:
        """A DAQ still in ``incoming/`` was never acknowledged: it must not come back."""
        for name in ("X.1", "X.2"):
            (self.root / "incoming" / name / "logs").mkdir(parents=True)
            (self.root / "incoming" / name / SPECIFICATION).write_bytes(SPEC)
        self.workspace.create("KEPT", SPEC, record("KEPT"))
        self.assertEqual(Workspace(self.root).prepare(), set())
        self.assertEqual(listing(self.root / "incoming"), [])
        self.assertEqual(listing(self.root / "daqs"), ["KEPT"])

    def test_prepare_drops_a_stray_file_in_incoming(self) -> None:
        """Everything in ``incoming/`` goes, files too: a file left there under a DAQ's id
        would otherwise make every later QueueDaq of that id fail."""
        (self.root / "incoming" / "X.3").write_bytes(b"left behind")
        Workspace(self.root).prepare()
        self.assertEqual(listing(self.root / "incoming"), [])
        self.workspace.create("X.3", SPEC, record("X.3"))


class CreateTests(WorkspaceTestCase):
    def test_create_makes_a_complete_folder(self) -> None:
        """The specification is kept byte for byte, beside the record and empty sub-folders."""
        path = self.workspace.create("A", SPEC, record("A"))
        self.assertEqual(path, self.root / "daqs" / "A")
        self.assertEqual(listing(path), ["logs", "sources", SPECIFICATION, STATUS])
        self.assertEqual((path / SPECIFICATION).read_bytes(), SPEC)
        self.assertEqual(json.loads((path / STATUS).read_bytes()), record("A"))
        self.assertEqual(listing(self.root / "incoming"), [])

    def test_the_folder_appears_in_daqs_only_when_complete_and_durable(self) -> None:
        """Files are written in ``incoming/``; the folder then appears in ``daqs/`` at once,
        and ``daqs/`` is fsync'd after the rename, before ``create`` returns (the reply)."""
        final = self.root / "daqs" / "A"
        writes: list[tuple[Path, bool]] = []
        synced: list[tuple[Path, bool]] = []
        self.spy("write_durably", lambda path, data: writes.append((path, final.exists())))
        self.spy("fsync_directory", lambda path: synced.append((path, final.exists())))
        self.workspace.create("A", SPEC, record("A"))
        staging = self.root / "incoming" / "A"
        self.assertEqual(writes, [(staging / SPECIFICATION, False), (staging / STATUS, False)])
        self.assertIn((self.root / "daqs", True), synced)

    def test_a_crash_before_the_rename_acknowledges_nothing(self) -> None:
        """A DAQ half written when the server died is dropped at the next start."""

        def crash(path: Path, data: bytes) -> None:
            if path.name == STATUS:
                raise KeyboardInterrupt("the server dies here")

        self.spy("write_durably", crash)
        with self.assertRaises(KeyboardInterrupt):
            self.workspace.create("A", SPEC, record("A"))
        self.assertEqual(listing(self.root / "daqs"), [])
        restarted = Workspace(self.root)
        restarted.prepare()
        self.assertEqual(restarted.scan(), ([], []))
        self.assertEqual(listing(self.root / "incoming"), [])

    def test_a_queued_id_is_refused_and_its_folder_untouched(self) -> None:
        """A second QueueDaq with the same id must not overwrite the accepted one."""
        self.workspace.create("A", SPEC, record("A"))
        with self.assertRaises(DuplicateDaq) as raised:
            self.workspace.create("A", b"{}", record("A", seq=2))
        self.assertIn("queued", str(raised.exception))
        self.assertEqual((self.root / "daqs" / "A" / SPECIFICATION).read_bytes(), SPEC)
        self.assertEqual(json.loads((self.root / "daqs" / "A" / STATUS).read_bytes())["seq"], 1)

    def test_an_archived_id_is_refused(self) -> None:
        """Ids are unique for the life of the workspace, not only while a DAQ is active."""
        self.workspace.create("A", SPEC, record("A"))
        self.workspace.archive_daq("A")
        with self.assertRaises(DuplicateDaq) as raised:
            self.workspace.create("A", SPEC, record("A", seq=2))
        self.assertIn("archived", str(raised.exception))
        self.assertEqual(listing(self.root / "daqs"), [])


class RecordTests(WorkspaceTestCase):
    def test_save_record_replaces_the_file_atomically(self) -> None:
        """A new file is renamed over the old one (a new inode), and no temporary remains."""
        folder = self.workspace.create("A", SPEC, record("A"))
        before = (folder / STATUS).stat().st_ino
        self.workspace.save_record("A", record("A", substate="Merging"))
        self.assertEqual(json.loads((folder / STATUS).read_bytes())["substate"], "Merging")
        self.assertNotEqual((folder / STATUS).stat().st_ino, before)
        self.assertEqual(listing(folder), ["logs", "sources", SPECIFICATION, STATUS])

    def test_write_durably_syncs_data_then_renames_then_syncs_the_folder(self) -> None:
        """The order that makes a crash leave the old or the new file, both complete."""
        target = self.root / "file.json"
        target.write_bytes(b"old")
        events: list[tuple[str, str]] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            real_fsync(fd)

        def replace(source: Any, destination: Any) -> None:
            events.append(("replace", f"{source} -> {destination}"))
            real_replace(source, destination)

        self.patch(os, "fsync", fsync)
        self.patch(os, "replace", replace)
        write_durably(target, b"new")
        temporary = str(target.with_name(".file.json.tmp"))
        self.assertEqual(
            events,
            [
                ("fsync", temporary),
                ("replace", f"{temporary} -> {target}"),
                ("fsync", str(self.root)),
            ],
        )
        self.assertEqual(target.read_bytes(), b"new")

    def test_archive_moves_the_folder_durably(self) -> None:
        """After archiving, the record is found in ``archive/`` and ``archive/`` was fsync'd."""
        self.workspace.create("A", SPEC, record("A"))
        self.workspace.save_record("A", record("A", substate="Completed"))
        archived = self.root / "archive" / "A"
        synced: list[tuple[Path, bool]] = []
        self.spy("fsync_directory", lambda path: synced.append((path, archived.exists())))
        self.assertEqual(self.workspace.archive_daq("A"), archived)
        self.assertEqual(listing(self.root / "daqs"), [])
        self.assertIn((self.root / "archive", True), synced)
        self.assertEqual(self.workspace.read_archived_record("A")["substate"], "Completed")

    def test_read_archived_record_of_unknown_or_unreadable_is_none(self) -> None:
        """GetDaqStatus of an id that was never archived, or whose record is damaged."""
        self.assertIsNone(self.workspace.read_archived_record("NOPE"))
        (self.root / "archive" / "BAD").mkdir()
        (self.root / "archive" / "BAD" / STATUS).write_bytes(b"{not json")
        self.assertIsNone(self.workspace.read_archived_record("BAD"))


class ScanTests(WorkspaceTestCase):
    def folder(self, name: str, status: bytes | None, specification: bytes | None = SPEC) -> Path:
        path = self.root / "daqs" / name
        path.mkdir()
        if status is not None:
            (path / STATUS).write_bytes(status)
        if specification is not None:
            (path / SPECIFICATION).write_bytes(specification)
        return path

    def test_scan_returns_every_readable_daq(self) -> None:
        """Recovery gets each DAQ's specification (as received) and its record."""
        self.workspace.create("A", SPEC, record("A", seq=2))
        self.workspace.create("B", b"{}", record("B", seq=1))
        stored, corrupt = self.workspace.scan()
        self.assertEqual(corrupt, [])
        self.assertEqual(
            stored,
            [
                StoredDaq("A", self.root / "daqs" / "A", SPEC, record("A", seq=2)),
                StoredDaq("B", self.root / "daqs" / "B", b"{}", record("B", seq=1)),
            ],
        )

    def test_unreadable_folders_are_set_aside_and_kept(self) -> None:
        """Each kind of damage moves the folder to ``corrupt/``, contents intact, and the
        readable DAQs are still returned: start-up goes on without the damaged ones."""
        self.workspace.create("GOOD", SPEC, record("GOOD"))
        self.folder("BAD_JSON", b'{"format": 1, "id": "BAD_JSON"')
        self.folder("NOT_UTF8", b"\xff\xfe\x00garbage")
        self.folder("NOT_A_RECORD", b"[1, 2]")
        self.folder("FORMAT", encode_record(record("FORMAT") | {"format": 2}))
        self.folder("MISMATCH", encode_record(record("OTHER")))
        self.folder("NO_SPEC", encode_record(record("NO_SPEC")), specification=None)
        self.folder("NO_STATUS", None)
        (self.root / "daqs" / "STRAY").write_bytes(b"a file, not a folder")
        stored, corrupt = self.workspace.scan()
        self.assertEqual([daq.daq_id for daq in stored], ["GOOD"])
        names = ["BAD_JSON", "FORMAT", "MISMATCH", "NOT_A_RECORD", "NOT_UTF8", "NO_SPEC"]
        names += ["NO_STATUS", "STRAY"]
        self.assertEqual([entry.name for entry in corrupt], names)
        self.assertEqual([entry.moved_to.name for entry in corrupt], [f"{n}.0" for n in names])
        self.assertTrue(all(entry.reason for entry in corrupt))
        self.assertEqual(listing(self.root / "daqs"), ["GOOD"])
        self.assertEqual(listing(self.root / "corrupt"), [f"{n}.0" for n in names])
        mismatch = self.root / "corrupt" / "MISMATCH.0" / STATUS
        self.assertEqual(json.loads(mismatch.read_bytes())["id"], "OTHER")
        self.assertIn("'OTHER'", corrupt[2].reason)

    def test_a_record_too_deeply_nested_to_parse_is_set_aside(self) -> None:
        """A record the JSON parser gives up on is damage like any other, not a crash of
        start-up (the parser raises RecursionError, not ValueError)."""
        self.workspace.create("GOOD", SPEC, record("GOOD"))
        self.folder("DEEP", b"[" * 100_000)
        stored, corrupt = self.workspace.scan()
        self.assertEqual([daq.daq_id for daq in stored], ["GOOD"])
        self.assertEqual([entry.moved_to.name for entry in corrupt], ["DEEP.0"])

    def test_set_aside_never_overwrites_an_earlier_one(self) -> None:
        """The same name damaged twice is kept twice, numbered in order."""
        for expected in ("X.0", "X.1", "X.2"):
            self.folder("X", b"{")
            [entry] = self.workspace.scan()[1]
            self.assertEqual(entry.moved_to, self.root / "corrupt" / expected)
        self.assertEqual(listing(self.root / "corrupt"), ["X.0", "X.1", "X.2"])


CRASHER = """
import os, signal, sys
from pathlib import Path
from dpmd.durable import write_durably

path, when = Path(sys.argv[1]), sys.argv[2]
real_write, real_replace = os.write, os.replace

def die(*_):
    os.kill(os.getpid(), signal.SIGKILL)

def half_then_die(fd, data):
    real_write(fd, data[: len(data) // 2])
    die()

def replace_then_die(source, target):
    real_replace(source, target)
    die()

if when == "while writing":
    os.write = half_then_die
elif when == "before the rename":
    os.replace = die
elif when == "after the rename":
    os.replace = replace_then_die
elif when == "on a full disk":  # no file may grow past 4 KiB: os.write fails with EFBIG
    import resource
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
    write_durably(path, b"new!" * int(sys.argv[3]))
except OSError as error:
    print(error.errno)
"""

OLD = b'{"old": "content"}\n'


class CrashTests(SynchronousTestCase):
    """``write_durably`` in a child process that dies: the file is old or new, never partial."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        self.target = self.directory / STATUS
        self.target.write_bytes(OLD)
        self.temporary = self.directory / f".{STATUS}.tmp"

    def run_crasher(self, when: str, words: int = 100_000) -> subprocess.CompletedProcess[bytes]:
        argv = [sys.executable, "-c", CRASHER, str(self.target), when, str(words)]
        return subprocess.run(argv, capture_output=True, env=child_environment(), timeout=30)

    def test_killed_while_writing_leaves_the_old_file(self) -> None:
        """Half the new bytes were written when the process died: the file is still the old."""
        result = self.run_crasher("while writing")
        self.assertEqual(result.returncode, -signal.SIGKILL, result.stderr)
        self.assertEqual(self.target.read_bytes(), OLD)
        self.assertEqual(self.temporary.stat().st_size, 200_000)

    def test_killed_before_the_rename_leaves_the_old_file(self) -> None:
        result = self.run_crasher("before the rename")
        self.assertEqual(result.returncode, -signal.SIGKILL, result.stderr)
        self.assertEqual(self.target.read_bytes(), OLD)

    def test_killed_after_the_rename_leaves_the_new_file(self) -> None:
        result = self.run_crasher("after the rename")
        self.assertEqual(result.returncode, -signal.SIGKILL, result.stderr)
        self.assertEqual(self.target.read_bytes(), b"new!" * 100_000)
        self.assertFalse(self.temporary.exists())

    def test_killed_from_outside_during_a_large_write(self) -> None:
        """SIGKILL from outside, as soon as the 128 MiB temporary has begun to fill: the
        file under the final name holds the old or the new content in full."""
        words = (128 << 20) // 4
        argv = [sys.executable, "-c", CRASHER, str(self.target), "undisturbed", str(words)]
        process = subprocess.Popen(argv, env=child_environment(), stderr=subprocess.PIPE)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        deadline = time.monotonic() + 20
        while not (self.temporary.exists() and self.temporary.stat().st_size > 0):
            self.assertIsNone(process.poll(), "the writer ended before it was killed")
            self.assertLess(time.monotonic(), deadline, "the temporary never appeared")
            time.sleep(0.001)
        process.kill()
        self.assertEqual(process.wait(timeout=30), -signal.SIGKILL)
        process.stderr.close()
        size = self.target.stat().st_size
        self.assertIn(size, (len(OLD), 4 * words))
        with open(self.target, "rb") as content:
            if size == len(OLD):
                self.assertEqual(content.read(), OLD)
            else:
                while block := content.read(1 << 20):
                    self.assertEqual(block, b"new!" * (len(block) // 4))

    def test_a_failed_write_keeps_the_old_file(self) -> None:
        """When the disk is full, the write fails and the previous record stays."""
        result = self.run_crasher("on a full disk")
        self.assertEqual(result.stdout.strip(), str(errno.EFBIG).encode(), result.stderr)
        self.assertEqual(self.target.read_bytes(), OLD)

    def test_a_failed_write_leaves_no_temporary(self) -> None:
        """The half-written temporary of a failed write is removed: on a full disk it holds
        the very space that is missing, and it would be archived with the DAQ."""
        result = self.run_crasher("on a full disk")
        self.assertEqual(result.stdout.strip(), str(errno.EFBIG).encode(), result.stderr)
        self.assertEqual(listing(self.directory), [STATUS])


class SerialExecutorTests(TestCase):
    """The workspace's writes go through ``SerialExecutor``: one thread, calls in order."""

    def started(self, stop_at_the_end: bool = True) -> SerialExecutor:
        executor = SerialExecutor(reactor, "test-workspace")
        executor.start()
        if stop_at_the_end:
            self.addCleanup(executor.stop)
        return executor

    @inlineCallbacks
    def test_calls_run_one_at_a_time_in_order_off_the_reactor_thread(self) -> None:
        """Earlier calls sleep longer: any overlap between calls would reorder them."""
        ran: list[tuple[int, int]] = []

        def call(number: int) -> int:
            time.sleep((10 - number) * 0.002)
            ran.append((number, threading.get_ident()))
            return number * 10

        executor = self.started()
        results = yield gatherResults([executor(call, n) for n in range(10)])
        self.assertEqual(results, [n * 10 for n in range(10)])
        self.assertEqual([number for number, _ in ran], list(range(10)))
        self.assertEqual(len({thread for _, thread in ran}), 1)
        self.assertNotEqual(ran[0][1], threading.get_ident())

    @inlineCallbacks
    def test_a_failure_reaches_its_caller_and_later_calls_still_run(self) -> None:
        """One failed write must not stop the writes queued after it."""

        def fail() -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        executor = self.started()
        failed = executor(fail)
        after = executor(lambda: "written")
        with self.assertRaises(OSError):
            yield failed
        self.assertEqual((yield after), "written")

    @inlineCallbacks
    def test_stop_finishes_the_calls_already_queued(self) -> None:
        """At shutdown the queued status changes still reach the disk."""
        executor = self.started(stop_at_the_end=False)
        done: list[int] = []
        results = [executor(lambda n=n: (time.sleep(0.01), done.append(n))) for n in range(5)]
        executor.stop()
        self.assertEqual(done, [0, 1, 2, 3, 4])
        yield gatherResults(results)
