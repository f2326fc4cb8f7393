"""Signs of life: heartbeats from the header work, paced copy steps, a line before fsync.

The server's stall watchdog takes any stdout line as a sign of life. These
tests use fake clocks (no timing), except where a real process is the point.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import json
import os
import threading

from twisted.trial.unittest import SynchronousTestCase

from dpmd.merge import fitsio
from dpmd.merge.__main__ import build_parser, main, run
from dpmd.merge.report import HEARTBEAT_INTERVAL, Reporter

from .fitsfactory import write_fits, write_raw_source, write_spec

DATE = "2024-02-01T12:00:00"


class FakeClock:
    """A monotonic clock that moves `step` seconds each time it is read."""

    def __init__(self, step: float = 0.0):
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class StampedStream(io.StringIO):
    """Remembers the fake time of every line written."""

    def __init__(self, clock: FakeClock):
        super().__init__()
        self.clock = clock
        self.stamps: list[float] = []

    def write(self, text: str) -> int:
        self.stamps += [self.clock.now] * text.count("\n")
        return super().write(text)


def lines_of(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class HeartbeatTests(SynchronousTestCase):
    def test_only_after_a_second_without_a_line(self) -> None:
        clock, out = FakeClock(), io.StringIO()
        reporter = Reporter(True, out, clock)
        reporter.beat()
        clock.now += HEARTBEAT_INTERVAL * 0.9
        reporter.beat()
        self.assertEqual(out.getvalue(), "")
        clock.now += HEARTBEAT_INTERVAL * 0.2
        reporter.beat()
        reporter.beat()
        self.assertEqual(lines_of(out), [{"type": "heartbeat"}])

    def test_any_line_restarts_the_interval(self) -> None:
        clock, out = FakeClock(), io.StringIO()
        reporter = Reporter(True, out, clock)
        clock.now += HEARTBEAT_INTERVAL * 0.9
        reporter.progress("write", 10)(5)
        clock.now += HEARTBEAT_INTERVAL * 0.9
        reporter.beat()
        self.assertEqual([line["type"] for line in lines_of(out)], ["progress"])

    def test_none_without_json(self) -> None:
        clock, out = FakeClock(step=10.0), io.StringIO()
        Reporter(False, out, clock).beat()
        self.assertEqual(out.getvalue(), "")


class HeaderWorkHeartbeatTests(SynchronousTestCase):
    """A merge with many keywords and rules prints heartbeats while it plans."""

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        keywords = [(f"HIERARCH ESO INS K{n}", n) for n in range(1500)]
        write_fits(os.path.join(self.root, "s.fits"), keywords)
        rules = [
            {"type": "transform", "selectionPatterns": ["+e INS *"], "regex": "K", "format": "Q"},
            {"type": "filter", "selectionPatterns": ["+e *"]},
            {"type": "transform", "selectionPatterns": ["+e INS *"], "regex": "Q", "format": "K"},
        ] * 3
        self.spec = write_spec(
            os.path.join(self.root, "spec.json"),
            {
                "id": "BIG",
                "target": {"fileId": "P"},
                "sources": [
                    {"type": "fitsFile", "sourceName": "s", "location": "s.fits",
                     "keywordRules": rules},
                    {"type": "fitsKeywords", "sourceName": "k", "keywordRules": rules,
                     "keywords": [{"type": "esoKeyword", "name": f"INS J{n}", "value": n}
                                  for n in range(1500)]},
                ],
            },
        )  # fmt: skip

    def run_with_clock(self, clock: FakeClock) -> list[dict]:
        out = io.StringIO()
        args = build_parser().parse_args(["--json", "--date", DATE, self.spec])
        with contextlib.redirect_stderr(io.StringIO()):
            self.assertEqual(run(args, Reporter(True, out, clock)), 0)
        return lines_of(out)

    def test_heartbeats_before_the_first_progress_line(self) -> None:
        lines = self.run_with_clock(FakeClock(step=0.1))
        kinds = [line["type"] for line in lines]
        first_progress = kinds.index("progress")
        self.assertGreater(kinds[:first_progress].count("heartbeat"), 1)
        self.assertEqual(kinds[-1], "result")

    def test_at_most_one_per_interval(self) -> None:
        clock = FakeClock(step=0.1)
        out = StampedStream(clock)
        args = build_parser().parse_args(["--json", "--date", DATE, self.spec])
        with contextlib.redirect_stderr(io.StringIO()):
            run(args, Reporter(True, out, clock))
        beats = [t for t, line in zip(out.stamps, lines_of(out), strict=True)
                 if line == {"type": "heartbeat"}]  # fmt: skip
        self.assertGreater(len(beats), 1)
        gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
        self.assertTrue(all(gap >= HEARTBEAT_INTERVAL for gap in gaps), gaps)

    def test_no_thread_is_started(self) -> None:
        """Heartbeats come from the work loops only: a merger stuck in one step stays silent."""

        def refuse(thread: threading.Thread) -> None:
            raise AssertionError(f"the merger started a thread: {thread!r}")

        self.patch(threading.Thread, "start", refuse)
        lines = self.run_with_clock(FakeClock(step=0.1))
        self.assertIn("heartbeat", [line["type"] for line in lines])


class PacerTests(SynchronousTestCase):
    def test_fast_steps_grow_to_whole_chunks(self) -> None:
        clock = FakeClock()
        pacer = fitsio.Pacer(clock)
        sizes = []
        for _ in range(8):
            size = pacer.start()
            sizes.append(size)
            clock.now += size / 2e9  # 2 GB/s
            pacer.finished(size)
        self.assertEqual(sizes[0], fitsio.FIRST_CHUNK)
        self.assertEqual(sizes[-1], fitsio.CHUNK)

    def test_slow_steps_shrink_to_a_quarter_second(self) -> None:
        clock = FakeClock()
        pacer = fitsio.Pacer(clock)
        for _ in range(3):
            size = pacer.start()
            clock.now += size / 400e3  # 400 kB/s: a first step of 1 MiB takes 2.6 s
            pacer.finished(size)
        self.assertLessEqual(pacer.size / 400e3, fitsio.STEP_SECONDS)
        self.assertGreaterEqual(pacer.size, fitsio.SMALLEST_CHUNK)

    def test_never_below_the_smallest_step(self) -> None:
        clock = FakeClock()
        pacer = fitsio.Pacer(clock)
        for _ in range(20):
            size = pacer.start()
            clock.now += 60.0
            pacer.finished(size)
        self.assertEqual(pacer.size, fitsio.SMALLEST_CHUNK)


class SlowDiskTests(SynchronousTestCase):
    """A copy to a disk that takes 1 s per 256 KiB reports progress every second or so."""

    def test_progress_at_least_every_few_seconds(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        data = os.urandom(6 * 1024 * 1024)
        src_path, dst_path = os.path.join(directory, "src"), os.path.join(directory, "dst")
        with open(src_path, "wb") as stream:
            stream.write(data)
        clock = FakeClock()
        kernel_copy = os.copy_file_range

        def slow_copy(src: int, dst: int, count: int, *offsets: int) -> int:
            copied = kernel_copy(src, dst, count, *offsets)
            clock.now += copied / (256 * 1024)
            return copied

        self.patch(os, "copy_file_range", slow_copy)
        progress_at: list[float] = []
        src = os.open(src_path, os.O_RDONLY)
        dst = os.open(dst_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fitsio.copy_range(
                src, 0, dst, 0, len(data), "src",
                lambda count: progress_at.append(clock.now), fitsio.Pacer(clock),
            )  # fmt: skip
        finally:
            os.close(src)
            os.close(dst)
        with open(dst_path, "rb") as stream:
            self.assertEqual(stream.read(), data)
        gaps = [b - a for a, b in zip([1000.0, *progress_at], progress_at, strict=False)]
        self.assertLessEqual(max(gaps), 4.0)  # the first 1 MiB step; then about 0.25 s each
        self.assertLessEqual(max(gaps[2:]), 1.0)

    def test_checksummed_copy_is_paced_too(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        data = os.urandom(4 * 1024 * 1024)
        path = os.path.join(directory, "src")
        with open(path, "wb") as stream:
            stream.write(data)
        clock = FakeClock()
        real_pread = os.preadv

        def slow_read(fd: int, buffers: list, offset: int) -> int:
            count = real_pread(fd, buffers, offset)
            clock.now += count / (256 * 1024)
            return count

        self.patch(os, "preadv", slow_read)
        steps: list[int] = []
        src = os.open(path, os.O_RDONLY)
        try:
            fitsio.sum_range(src, 0, len(data), "src", steps.append, pacer=fitsio.Pacer(clock))
        finally:
            os.close(src)
        self.assertEqual(sum(steps), len(data))
        self.assertLessEqual(max(steps[2:]), 256 * 1024)


class SyncAnnouncedTests(SynchronousTestCase):
    """The final fsync of the product is preceded by a `sync` progress line."""

    def test_new_file(self) -> None:
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        write_raw_source(os.path.join(root, "raw.fits"), 3 * 1024 * 1024)
        spec = write_spec(
            os.path.join(root, "spec.json"),
            {"id": "S", "target": {"fileId": "P"},
             "sources": [{"type": "fitsFile", "sourceName": "raw", "location": "raw.fits"}]},
        )  # fmt: skip
        out = io.StringIO()
        at_fsync: list[str] = []
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            at_fsync.append(out.getvalue().splitlines()[-1])
            real_fsync(fd)

        self.patch(os, "fsync", fsync)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            self.assertEqual(main(["--json", "--date", DATE, spec]), 0)
        size = os.path.getsize(os.path.join(root, "P.fits"))
        self.assertEqual(
            json.loads(at_fsync[0]),
            {"type": "progress", "stage": "sync", "done": 0, "total": size, "unit": "bytes"},
        )

    def test_in_place_update(self) -> None:
        root = os.path.abspath(self.mktemp())
        target = write_fits(os.path.join(root, "t.fits"), [("OBJECT", "t")], reserve=20)
        write_raw_source(os.path.join(root, "raw.fits"), 1024 * 1024)
        spec = write_spec(
            os.path.join(root, "spec.json"),
            {"id": "S", "target": {"fileId": "P", "source": {
                "type": "fitsFile", "sourceName": "t", "location": "t.fits"}},
             "sources": [{"type": "fitsFile", "sourceName": "raw", "location": "raw.fits"}]},
        )  # fmt: skip
        out = io.StringIO()
        at_fsync: list[dict] = []
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            with contextlib.suppress(OSError, IndexError):
                if os.path.samefile(f"/proc/self/fd/{fd}", target):
                    at_fsync.append(json.loads(out.getvalue().splitlines()[-1]))
            real_fsync(fd)

        self.patch(os, "fsync", fsync)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            self.assertEqual(main(["--json", "--date", DATE, spec]), 0)
        self.assertEqual(at_fsync[0]["stage"], "sync")
        self.assertEqual(at_fsync[0]["total"], os.path.getsize(target))


class WriteErrorsStillReportedTests(SynchronousTestCase):
    def test_enospc_during_a_paced_copy(self) -> None:
        """Pacing does not hide a full disk: the copy still fails with exit code 5."""
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        write_raw_source(os.path.join(root, "raw.fits"), 2 * 1024 * 1024)
        spec = write_spec(
            os.path.join(root, "spec.json"),
            {"id": "S", "target": {"fileId": "P"},
             "sources": [{"type": "fitsFile", "sourceName": "raw", "location": "raw.fits"}]},
        )  # fmt: skip

        def full(*args: object) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(os, "copy_file_range", full)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            self.assertEqual(main(["--json", spec]), 5)
        self.assertEqual(lines_of(out)[-1]["code"], 5)
        self.assertEqual(sorted(os.listdir(root)), ["raw.fits", "spec.json"])
