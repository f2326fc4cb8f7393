"""Benchmark: the server answers status calls while merges run; QueueDaq throughput.

    python bench/server.py [--calls 400] [--interval 0.005] [--ext-mib 64] [--extensions 4]
                           [--daq-limit 1] [--merge-limit 1] [--min-merges 4]
                           [--dir DIR] [--keep]

Starts a real dpmd (``twistd --nodaemon --pidfile= --logfile=… dpmd --config …``) in a
temporary directory, then:

1. idle: ``--calls`` status calls (``/daq/GetActiveDaqs`` and ``/dpm/QueryStorageStatus``
   alternately, one every ``--interval`` s) over one TCP connection; median and p99;
2. busy: the same calls while merges run continuously (a feeder on a second connection
   keeps ``--daq-limit`` + 1 DAQs queued, each merging a generated source of
   ``--extensions`` x ``--ext-mib`` MiB, and deletes each released product); the busy/idle
   ratios, the merge throughput and the server's peak RSS in both phases;
(QueueDaq throughput, the cost at 10,000 DAQs and start-up with a long history are
``bench/core.py``'s.)

Not a test: it prints numbers and asserts nothing. Needs Linux (/proc) and psutil.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import Rpc, start_server  # noqa: E402
from tests.fitsfactory import write_raw_source  # noqa: E402

MIB = 1 << 20
STATUS_CALLS = ("/daq/GetActiveDaqs", "/dpm/QueryStorageStatus")


class Sampler(threading.Thread):
    """Peak RSS of the server and of its children, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.server = psutil.Process(pid)
        self.stopping = threading.Event()
        self.reset()

    def reset(self) -> None:
        self.server_peak = 0
        self.child_peak = 0

    def run(self) -> None:
        while not self.stopping.wait(0.02):
            try:
                self.server_peak = max(self.server_peak, self.server.memory_info().rss)
                for child in self.server.children(recursive=True):
                    self.child_peak = max(self.child_peak, child.memory_info().rss)
            except psutil.Error:
                pass

    def high_water_mark(self) -> int:
        """VmHWM: the server's peak RSS since it started."""
        for line in Path(f"/proc/{self.server.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0


def latencies(rpc: Rpc, calls: int, interval: float) -> dict[str, list[float]]:
    """Seconds per call of each status method, calls alternating, one every ``interval``."""
    times: dict[str, list[float]] = {method: [] for method in STATUS_CALLS}
    for number in range(calls):
        method = STATUS_CALLS[number % len(STATUS_CALLS)]
        start = time.perf_counter()
        rpc.call(method)
        times[method].append(time.perf_counter() - start)
        time.sleep(interval)
    times["both"] = [t for method in STATUS_CALLS for t in times[method]]
    return times


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


class Feeder(threading.Thread):
    """Keeps DAQs queued so that merges run back to back; records what they did."""

    def __init__(self, port: int, source: Path, in_flight: int) -> None:
        super().__init__(daemon=True)
        self.rpc = Rpc(port)
        self.rpc.call("Subscribe", "/daq/status")
        self.source = source
        self.in_flight = in_flight
        self.feeding = threading.Event()
        self.feeding.set()
        self.stopping = threading.Event()
        self.queued = 0
        self.unfinished: set[str] = set()
        self.merge_started: dict[str, float] = {}
        self.merge_seconds: dict[str, float] = {}
        self.first_merge: float | None = None
        self.completed: list[tuple[float, int, float]] = []  # (when, bytes, merge seconds)
        self.failure: str | None = None

    def queue_one(self) -> None:
        self.queued += 1
        daq_id = f"BUSY.{self.queued}"
        spec = {
            "id": daq_id,
            "sources": [
                {"type": "fitsKeywords", "sourceName": "ocm",
                 "keywords": [{"type": "valueKeyword", "name": "OBJECT", "value": "BENCH"}]},
                {"type": "fitsFile", "sourceName": "raw", "location": str(self.source)},
            ],
            "target": {"fileId": daq_id},
        }  # fmt: skip
        self.rpc.call("/daq/QueueDaq", json.dumps(spec))
        self.unfinished.add(daq_id)

    def observe(self, status: dict[str, Any]) -> None:
        now = time.perf_counter()
        daq_id, substate = status["id"], status["substate"]
        if status["error"]:
            self.failure = f"{daq_id} failed: {status['alerts']}"
        if substate == "Merging" and daq_id not in self.merge_started:
            self.merge_started[daq_id] = now
            self.first_merge = self.first_merge or now
        if substate == "Releasing" and daq_id not in self.merge_seconds:
            self.merge_seconds[daq_id] = now - self.merge_started.get(daq_id, now)
        if substate == "Completed" and daq_id in self.unfinished:
            self.unfinished.discard(daq_id)
            product = Path(status["result"])
            size = product.stat().st_size
            product.unlink()  # keeps the disk from filling up
            self.completed.append((now, size, self.merge_seconds.get(daq_id, 0.0)))

    def run(self) -> None:
        while not self.stopping.is_set() and self.failure is None:
            while self.feeding.is_set() and len(self.unfinished) < self.in_flight:
                self.queue_one()
            while self.rpc.notifications:
                self.observe(self.rpc.notifications.popleft())
            message = self.rpc.read(timeout=0.1)
            if message is not None and "id" not in message:
                self.observe(message["params"])

    def wait(self, condition: Any, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if self.failure:
                raise SystemExit(self.failure)
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.02)


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def report_latency(idle: dict[str, list[float]], busy: dict[str, list[float]]) -> None:
    print(f"\n{'status call':<26} {'idle median':>12} {'busy median':>12} {'ratio':>6}"
          f" {'idle p99':>11} {'busy p99':>11} {'ratio':>6}")  # fmt: skip
    for method in (*STATUS_CALLS, "both"):
        i, b = idle[method], busy[method]
        print(
            f"{method:<26} {milliseconds(statistics.median(i)):>12}"
            f" {milliseconds(statistics.median(b)):>12}"
            f" {statistics.median(b) / statistics.median(i):6.2f}"
            f" {milliseconds(p99(i)):>11} {milliseconds(p99(b)):>11} {p99(b) / p99(i):6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="status calls per phase")
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between calls")
    parser.add_argument("--ext-mib", type=int, default=64, help="MiB per source extension")
    parser.add_argument("--extensions", type=int, default=4, help="extensions per source")
    parser.add_argument("--daq-limit", type=int, default=1, help="limits.daq")
    parser.add_argument("--merge-limit", type=int, default=1, help="limits.merge")
    parser.add_argument("--min-merges", type=int, default=4, help="merges the busy phase spans")
    parser.add_argument("--dir", default=None, help="work directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dpmd-bench-", dir=args.dir)).resolve()
    source_bytes = args.extensions * args.ext_mib * MIB
    needed = source_bytes * (args.daq_limit + 3) + 512 * MIB
    free = shutil.disk_usage(work).free
    if free < needed:
        shutil.rmtree(work)
        raise SystemExit(f"{work.parent} has {free / MIB:.0f} MiB free; {needed / MIB:.0f} needed")
    config = work / "dpmd.yaml"
    config.write_text(
        "listen: ['tcp:0:interface=127.0.0.1']\n"
        f"limits:\n  daq: {args.daq_limit}\n  merge: {args.merge_limit}\n"
    )
    print(f"work directory {work}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    started = time.perf_counter()
    source = Path(write_raw_source(str(work / "raw.fits"), args.ext_mib * MIB, args.extensions))
    print(f"generated {source.stat().st_size / MIB:.0f} MiB source in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip

    process, port = start_server(work, config)
    sampler = Sampler(process.pid)
    sampler.start()
    try:
        rpc = Rpc(port)
        latencies(rpc, 50, 0)  # warm-up: imports, first statvfs, connection set-up
        sampler.reset()
        idle = latencies(rpc, args.calls, args.interval)
        idle_peak, idle_hwm = sampler.server_peak, sampler.high_water_mark()

        feeder = Feeder(port, source, args.daq_limit + 1)
        feeder.start()
        feeder.wait(lambda: feeder.first_merge is not None, 120, "the first merge")
        sampler.reset()
        busy_start = time.perf_counter()
        busy = latencies(rpc, args.calls, args.interval)
        busy_seconds = time.perf_counter() - busy_start
        feeder.wait(lambda: len(feeder.completed) >= args.min_merges, 600, "the merges")
        busy_peak, child_peak = sampler.server_peak, sampler.child_peak
        feeder.feeding.clear()
        feeder.wait(lambda: not feeder.unfinished, 600, "the last DAQs")
        feeder.stopping.set()
        feeder.join()
        busy_hwm = sampler.high_water_mark()

        report_latency(idle, busy)
        window = feeder.completed[-1][0] - feeder.first_merge
        merged = sum(size for _, size, _ in feeder.completed)
        merge_time = sum(seconds for _, _, seconds in feeder.completed)
        print(f"\nbusy phase: {args.calls} calls in {busy_seconds:.1f} s; "
              f"{len(feeder.completed)} DAQs of {source_bytes / MIB:.0f} MiB merged "
              f"(limits.daq {args.daq_limit}, limits.merge {args.merge_limit})")  # fmt: skip
        print(f"merge throughput: {merged / MIB / window:.0f} MiB/s overall "
              f"(first merge to last completion), {merged / MIB / merge_time:.0f} MiB/s "
              f"within merges (Merging to Releasing)")  # fmt: skip
        print(f"server peak RSS: idle {idle_peak / MIB:.1f} MiB (VmHWM {idle_hwm / MIB:.1f}), "
              f"busy {busy_peak / MIB:.1f} MiB (VmHWM {busy_hwm / MIB:.1f}); "
              f"merger peak RSS {child_peak / MIB:.1f} MiB")  # fmt: skip
        rpc.call("/dpm/Exit")
        rpc.close()
        process.wait(timeout=60)
    finally:
        sampler.stopping.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
