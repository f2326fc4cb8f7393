"""``python -m dpmd.copyfile``: the copy a release makes when it cannot link.

An archive's ingestion watches the receiver's directory, so the file must
appear there complete or not at all, whatever happens to the copier.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import dpmd.copyfile
from dpmd.copyfile import copy_durably, remove_stale_temporary, temporary_name
from dpmd.workers import child_environment

MIB = 1 << 20


def pattern(size: int, seed: int = 1) -> bytes:
    """Bytes that differ at every offset of a short period, so a shifted copy shows."""
    block = bytes((seed + n * 7 + n // 251) % 256 for n in range(65_521))
    return (block * (size // len(block) + 1))[:size]


def run_copy(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dpmd.copyfile", *arguments],
        capture_output=True,
        text=True,
        env=child_environment(),
        timeout=60,
    )


class CopyTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        self.source = self.directory / "product.fits"
        self.target = self.directory / "olas" / "P.fits"
        self.target.parent.mkdir()

    def copy_in_process(self, chunk: int) -> tuple[int, list[dict[str, int]]]:
        """``copy_durably`` with a small ``CHUNK``; returns the count and progress lines."""
        self.patch(dpmd.copyfile, "CHUNK", chunk)
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            copied = copy_durably(self.source, self.target)
        return copied, [json.loads(line) for line in output.getvalue().splitlines()]

    def assertOnlyTarget(self) -> None:
        """The receiver's directory holds the complete product and nothing else."""
        self.assertEqual(os.listdir(self.target.parent), [self.target.name])
        self.assertEqual(self.target.read_bytes(), self.source.read_bytes())


class CopyDurablyTests(CopyTestCase):
    def test_a_file_of_several_chunks_is_copied_exactly(self) -> None:
        """The loop must join chunks without a gap or overlap, the odd tail included."""
        self.source.write_bytes(pattern(10 * 4096 + 123))
        copied, progress = self.copy_in_process(chunk=4096)
        self.assertEqual(copied, 10 * 4096 + 123)
        self.assertOnlyTarget()
        self.assertEqual(progress[-1], {"type": "progress", "done": copied, "total": copied})

    def test_progress_is_reported_while_copying(self) -> None:
        """Large copies report how far they are, for GetInternalDaqStatus."""
        self.patch(dpmd.copyfile, "PROGRESS_EVERY", 8192)
        self.source.write_bytes(pattern(8 * 4096))
        _, progress = self.copy_in_process(chunk=4096)
        self.assertEqual([line["done"] for line in progress], [8192, 16384, 24576, 32768, 32768])
        self.assertEqual({line["total"] for line in progress}, {32768})

    def test_an_empty_file(self) -> None:
        """An empty product is still delivered, as an empty file."""
        self.source.write_bytes(b"")
        copied, progress = self.copy_in_process(chunk=4096)
        self.assertEqual(copied, 0)
        self.assertOnlyTarget()
        self.assertEqual(progress, [{"type": "progress", "done": 0, "total": 0}])

    def test_a_sparse_file_reads_back_identical(self) -> None:
        """Holes read as zeros in the copy too; the data around them is where it was."""
        with open(self.source, "wb") as stream:
            stream.truncate(5 * MIB)
            for offset in (0, 2 * MIB + 17, 5 * MIB - 5):
                stream.seek(offset)
                stream.write(b"DATA!")
        self.copy_in_process(chunk=MIB)
        self.assertOnlyTarget()

    def test_falls_back_to_sendfile_when_copy_file_range_fails(self) -> None:
        """Across file systems (or on old kernels) copy_file_range fails; sendfile copies."""

        def refuse(*_: object) -> int:
            raise OSError(18, "Invalid cross-device link")

        self.patch(os, "copy_file_range", refuse)
        self.source.write_bytes(pattern(3 * 4096 + 5))
        self.copy_in_process(chunk=4096)
        self.assertOnlyTarget()

    def test_an_existing_target_is_replaced_whole(self) -> None:
        """A retried release replaces an earlier copy by rename, never rewrites it in place."""
        self.target.write_bytes(b"an older, longer product" * 100)
        before = self.target.stat().st_ino
        self.source.write_bytes(pattern(5000))
        self.copy_in_process(chunk=4096)
        self.assertOnlyTarget()
        self.assertNotEqual(self.target.stat().st_ino, before)

    def test_a_source_that_shrinks_during_the_copy_fails(self) -> None:
        """Were the source cut short while it is copied, the copy would be short too: that is
        a failure, not a product delivered without its end."""
        self.source.write_bytes(pattern(4 * 4096))
        real = os.copy_file_range

        def copy_then_truncate(source_fd: int, target_fd: int, count: int) -> int:
            copied = real(source_fd, target_fd, count)
            os.truncate(self.source, 4096)  # someone cuts the source after the first chunk
            return copied

        self.patch(os, "copy_file_range", copy_then_truncate)
        with self.assertRaises(OSError):
            self.copy_in_process(chunk=4096)
        self.assertFalse(self.target.exists())


class CommandLineTests(CopyTestCase):
    def test_copy_prints_json_progress_and_exits_zero(self) -> None:
        self.source.write_bytes(pattern(100_000))
        result = run_copy(str(self.source), str(self.target))
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        self.assertEqual(lines, [{"type": "progress", "done": 100_000, "total": 100_000}])
        self.assertOnlyTarget()

    def test_missing_source_exits_one_and_leaves_nothing(self) -> None:
        """The release reports the copier's last stderr line: it must say what went wrong."""
        result = run_copy(str(self.source), str(self.target))
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr,
            f"cannot copy {self.source} to {self.target}: No such file or directory\n",
        )
        self.assertEqual(os.listdir(self.target.parent), [])

    def test_missing_target_directory_exits_one_and_leaves_nothing(self) -> None:
        self.source.write_bytes(b"x" * 10)
        target = self.directory / "gone" / "P.fits"
        result = run_copy(str(self.source), str(target))
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"cannot copy {self.source} to {target}: ", result.stderr)
        self.assertIn("No such file or directory", result.stderr)
        self.assertFalse(target.parent.exists())
        self.assertEqual(sorted(os.listdir(self.directory)), ["olas", self.source.name])

    def test_a_directory_under_the_final_name_is_refused_before_copying(self) -> None:
        self.source.write_bytes(b"x" * 10)
        self.target.mkdir()
        result = run_copy(str(self.source), str(self.target))
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{self.target} is a directory; refusing to replace it", result.stderr)
        self.assertEqual(os.listdir(self.target.parent), [self.target.name])

    def test_a_failed_rename_removes_its_temporary(self) -> None:
        """The data was copied, then the rename fails: the temporary does not stay behind."""
        self.source.write_bytes(b"x" * 10)

        def refuse(*_: object, **__: object) -> None:
            raise OSError(errno.EIO, "Input/output error")

        self.patch(os, "replace", refuse)
        with self.assertRaises(OSError):
            self.copy_in_process(chunk=4096)
        self.assertEqual(os.listdir(self.target.parent), [])

    def test_bad_usage_exits_two(self) -> None:
        for arguments in ([], [str(self.source)], [str(self.source), "a", "b"]):
            result = run_copy(*arguments)
            self.assertEqual(result.returncode, 2, arguments)
            self.assertIn("usage: python -m dpmd.copyfile SOURCE TARGET", result.stderr)
        self.assertEqual(os.listdir(self.target.parent), [])

    def test_killed_mid_copy_leaves_no_partial_file_under_the_final_name(self) -> None:
        """SIGKILL while a 256 MiB copy is under way: the receiver sees nothing, or all of it
        (only the hidden temporary may hold a partial copy, for the release to remove)."""
        block = pattern(MIB)
        with open(self.source, "wb") as stream:
            for _ in range(256):
                stream.write(block)
        temporary = temporary_name(self.target)
        process = subprocess.Popen(
            [sys.executable, "-m", "dpmd.copyfile", str(self.source), str(self.target)],
            env=child_environment(),
            stdout=subprocess.DEVNULL,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        deadline = time.monotonic() + 20
        while not (temporary.exists() and temporary.stat().st_size > 0):
            self.assertIsNone(process.poll(), "the copy ended before it was killed")
            self.assertLess(time.monotonic(), deadline, "the temporary never appeared")
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        self.assertEqual(process.wait(timeout=30), -signal.SIGKILL)
        if self.target.exists():
            self.assertOnlyTarget()
        else:
            self.assertEqual(os.listdir(self.target.parent), [temporary.name])


class PlantedFileTests(CopyTestCase):
    """Whoever can write into a receiver's directory must not be able to redirect the copy."""

    def setUp(self) -> None:
        super().setUp()
        self.source.write_bytes(pattern(5000))
        self.victim = self.directory / "victim"
        self.victim.write_bytes(b"precious")
        self.temporary = temporary_name(self.target)

    def assertVictimUntouched(self) -> None:
        self.assertEqual(self.victim.read_bytes(), b"precious")

    def test_a_symbolic_link_planted_as_the_temporary_is_never_followed(self) -> None:
        self.temporary.symlink_to(self.victim)
        result = run_copy(str(self.source), str(self.target))
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{self.temporary} is a symbolic link; refusing", result.stderr)
        self.assertVictimUntouched()
        self.assertFalse(self.target.exists() or self.target.is_symlink())
        self.assertTrue(self.temporary.is_symlink(), "the plant stays for the operator to see")

    def test_a_dangling_link_planted_as_the_temporary_creates_nothing(self) -> None:
        """``open(O_CREAT)`` without ``O_NOFOLLOW`` would create the link's target."""
        elsewhere = self.directory / "created-elsewhere"
        self.temporary.symlink_to(elsewhere)
        self.assertEqual(run_copy(str(self.source), str(self.target)).returncode, 1)
        self.assertFalse(elsewhere.exists())

    def test_a_hard_link_planted_as_the_temporary_is_not_written(self) -> None:
        os.link(self.victim, self.temporary)
        result = run_copy(str(self.source), str(self.target))
        self.assertEqual(result.returncode, 1)
        self.assertIn("a file not ours; refusing", result.stderr)
        self.assertVictimUntouched()
        self.assertTrue(self.temporary.exists())

    def test_a_final_name_that_is_a_symbolic_link_is_refused(self) -> None:
        self.target.symlink_to(self.victim)
        result = run_copy(str(self.source), str(self.target))
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{self.target} is a symbolic link; refusing to replace it", result.stderr)
        self.assertVictimUntouched()
        self.assertTrue(self.target.is_symlink())
        self.assertFalse(self.temporary.exists())

    def test_a_leftover_of_an_interrupted_copy_is_replaced(self) -> None:
        self.temporary.write_bytes(b"half a product")
        result = run_copy(str(self.source), str(self.target))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertOnlyTarget()

    def test_a_failure_leaves_a_file_it_did_not_create(self) -> None:
        """The copier used to unlink the temporary name on any failure, whoever's it was."""
        os.link(self.victim, self.temporary)
        run_copy(str(self.source), str(self.target))
        self.assertTrue(self.temporary.exists())

    def test_remove_stale_temporary_removes_only_leftovers_of_ours(self) -> None:
        self.temporary.symlink_to(self.victim)
        self.assertFalse(remove_stale_temporary(self.target))
        self.assertTrue(self.temporary.is_symlink())
        self.temporary.unlink()
        self.temporary.write_bytes(b"half")
        self.assertTrue(remove_stale_temporary(self.target))
        self.assertFalse(self.temporary.exists())
        self.assertFalse(remove_stale_temporary(self.target))
        self.assertVictimUntouched()
