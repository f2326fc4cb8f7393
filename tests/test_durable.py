"""Durable writes and the serial writer thread, on a real file system.

Crashes are real: a child process that calls ``write_durably`` is killed with
SIGKILL, either by itself at a chosen point or from outside while it writes.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dpmd.blocking import SerialExecutor
from dpmd.durable import rename_no_replace, write_durably
from dpmd.workers import child_environment

STATUS = "record.json"


def listing(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


class WriteDurablyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()

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



class RenameNoReplaceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()
        self.source = self.root / ".staged"
        self.source.write_bytes(b"product")

    def test_renames_when_the_name_is_free(self) -> None:
        rename_no_replace(self.source, self.root / "final")
        self.assertEqual(listing(self.root), ["final"])

    def test_never_replaces_a_file(self) -> None:
        target = self.root / "final"
        target.write_bytes(b"someone else's")
        self.assertRaises(FileExistsError, rename_no_replace, self.source, target)
        self.assertEqual(target.read_bytes(), b"someone else's")
        self.assertTrue(self.source.exists())

    def test_never_follows_or_replaces_a_symbolic_link(self) -> None:
        elsewhere = self.root / "elsewhere"
        target = self.root / "final"
        target.symlink_to(elsewhere)
        self.assertRaises(FileExistsError, rename_no_replace, self.source, target)
        self.assertTrue(target.is_symlink())
        self.assertFalse(elsewhere.exists())


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
            time.sleep((10 - number) * 0.002)  # the window an overlap would need: no event
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
        # Slow calls, so that most still wait when stop is asked for.  No event can hold them
        # until then: stop() blocks until the thread ends, so only another thread could let
        # a held call go, and it would race stop() again.
        results = [executor(lambda n=n: (time.sleep(0.01), done.append(n))) for n in range(5)]
        executor.stop()
        self.assertEqual(done, [0, 1, 2, 3, 4])
        yield gatherResults(results)

    def test_a_call_after_stop_is_refused_at_once(self) -> None:
        """Nothing may wait for ever on a thread that has ended."""
        executor = self.started(stop_at_the_end=False)
        executor.stop()
        with self.assertRaises(RuntimeError) as refused:
            executor(lambda: None)
        self.assertIn("test-workspace has stopped", str(refused.exception))
