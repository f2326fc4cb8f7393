"""Benchmark: what a request costs the reactor, and the pauses a client could see.

    python bench/reactor.py [--rounds 5] [--clients 20] [--each 30] [--queued 13000]
                            [--dir DIR] [--keep]

Every figure is a ratio against a baseline measured in the same run (machines
here are noisy), in ``--rounds`` rounds; each round's ratio is printed, then the
median and the worst.

1. **QueueDaq rate** against the write + fsync + rename + fsync-dir loop (the
   least one durable acknowledgement costs), the loop run just before and just
   after each measurement (their mean is the baseline):
   a. one client, each request answered before the next is sent;
   b. ``--clients`` clients each sending ``--each`` back to back, as **one burst
      within 5 s of the server's start** (a new server each round: the cold burst);
   c. the same burst again on the same server, once it has queued 2,000 DAQs
      (steady state).
2. **Server processor per QueueDaq**: the server process's user + system time
   (``/proc``, through psutil) over the one-client run and over the steady burst,
   divided by their DAQs; the vetting child's, on the other core, beside it.
3. **The longest reactor stall**: a 1 ms ``LoopingCall`` in the server
   (``bench/probe.py``) notes its worst lateness while ``--queued`` DAQs are
   queued, and then while a full garbage collection is forced with them in memory.
4. **Status calls pipelined**: 5,000 ``GetDaqStatus`` and 5,000
   ``QueryStorageStatus`` on one connection, sent back to back, against the
   *json floor* — a Twisted line server that does ``json.loads`` of each request
   and writes a canned reply — five times in turn with it, the median of the
   five ratios (one run of 2,000 each, a twentieth of a second, was at the mercy
   of the scheduler: 0.5 to 1.25 for the same build).
5. **GetActiveDaqs** of 10,000 DAQs against a server that only encodes the same
   list (lower is better), and the server's RSS with ``--queued`` queued.

The DAQs queued here wait: the first names a source that does not exist, so it
blocks in Collecting and keeps the one ``limits.daq`` slot.  Not a test: it prints
numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import Rpc  # noqa: E402
from bench.core import (  # noqa: E402
    active_against_encode_only,
    fill,
    fsync_loop,
    queue_many_clients,
    queue_one_client,
    stop,
)

MIB = 1 << 20
STEADY_FILL = 2000
ONE = 300
ACTIVE = 10_000
PIPELINED = 5_000
TURNS = 5

JSON_FLOOR_SERVER = """
import json, sys
from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
canned = sys.argv[1].encode()

class Floor(LineOnlyReceiver):
    delimiter = b"\\n"
    MAX_LENGTH = 1 << 24
    def lineReceived(self, line):
        request = json.loads(line)
        self.sendLine(b'{"jsonrpc":"2.0","id":%d,"result":' % request["id"] + canned + b"}")

port = reactor.listenTCP(0, Factory.forProtocol(Floor), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""


class Server:
    """A dpmd under ``bench/probe.py`` in its own folder."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.report = folder / "stall.txt"
        config = folder / "dpmd.yaml"
        config.write_text("listen: ['tcp:0:interface=127.0.0.1']\nlimits: {daq: 1}\n")
        log = folder / "twistd.log"
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.probe", str(self.report), "--", "--nodaemon",
             "--pidfile=", f"--logfile={log}", "dpmd", "--config", str(config)],
            cwd=folder, env=dict(os.environ, PYTHONPATH=str(REPO), DATAROOT=str(folder)),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.process.poll() is None:
            for line in (log.read_text() if log.exists() else "").splitlines():
                if "dpmd serving workspace" in line:
                    self.port = int(line.rsplit(":", 1)[1])
                    self.ps = psutil.Process(self.process.pid)
                    return
            time.sleep(0.01)
        self.process.kill()
        raise SystemExit(f"dpmd did not start: {self.process.communicate()[1].decode()}")

    def cpu(self) -> tuple[float, float]:
        """Processor seconds (user + system) of the server, and of its vetting child."""
        own = self.ps.cpu_times()
        child = 0.0
        for process in self.ps.children(recursive=True):
            try:
                if "vetting" in " ".join(process.cmdline()):
                    times = process.cpu_times()
                    child += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return own.user + own.system, child

    def worst_stall(self) -> float:
        """The longest reactor stall since the last call (and start a new window)."""
        self.report.unlink(missing_ok=True)
        self.process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not self.report.exists():
            if time.monotonic() > deadline:
                raise SystemExit("the probe did not report")
            time.sleep(0.01)
        return float(self.report.read_text())

    def collect(self) -> None:
        """Have the reactor run a full garbage collection; wait until it answers again."""
        self.process.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        Rpc(self.port).call("/dpm/QueryStorageStatus")

    def stop(self) -> None:
        stop(self.process, self.port)


def against_loop(work: Path, name: str, count: int, measure: Callable[[], float]) -> float:
    """``measure()``'s rate over the mean of the fsync loop just before and just after."""
    before = fsync_loop(work / f"{name}-before", count)
    rate = measure()
    after = fsync_loop(work / f"{name}-after", count)
    return rate / ((before + after) / 2)


def pipelined(port: int, method: str, params: list[Any], count: int) -> float:
    """Requests per second of ``count`` requests written back to back on one connection."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lines = b"".join(
        json.dumps({"jsonrpc": "2.0", "id": n, "method": method, "params": params}).encode()
        + b"\n"
        for n in range(count)
    )
    start = time.perf_counter()
    connection.sendall(lines)
    received = 0
    while received < count:
        data = connection.recv(1 << 20)
        if not data:
            raise ConnectionError("the server closed the connection")
        received += data.count(b"\n")
    elapsed = time.perf_counter() - start
    connection.close()
    return count / elapsed


def against_floor(port: int, floor_port: int, method: str, params: list[Any]) -> float:
    """The server's pipelined rate over the floor's: ``PIPELINED`` requests to each in
    turn, ``TURNS`` times (a neighbour's burst weighs on both), the median of the ratios."""
    ratios = [pipelined(port, method, params, PIPELINED)
              / pipelined(floor_port, method, params, PIPELINED)
              for _ in range(TURNS)]  # fmt: skip
    return statistics.median(ratios)


def json_floor(canned: bytes) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen([sys.executable, "-c", JSON_FLOOR_SERVER, canned.decode()],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def summary(label: str, values: list[float], better: str = "higher") -> str:
    shown = ", ".join(f"{value:.2f}" for value in values)
    worst = min(values) if better == "higher" else max(values)
    return (f"   {label:44} {shown}   median {statistics.median(values):.2f}, "
            f"worst {worst:.2f}")  # fmt: skip


def one_round(work: Path, args: argparse.Namespace, number: int) -> dict[str, float]:
    out: dict[str, float] = {}
    server = Server(work / f"round-{number}")
    try:
        queue_one_client(server.port, ["BLOCKER"])
        out["cold"] = against_loop(work / f"round-{number}", "cold", args.clients * args.each,
                                   lambda: queue_many_clients(server.port, "COLD", args.clients,
                                                              args.each))  # fmt: skip
        out["cold_after"] = time.monotonic() - server.started
        fill(server.port, STEADY_FILL, "STEADY-FILL")
        cpu_before, child_before = server.cpu()
        steady = args.clients * args.each
        out["steady"] = against_loop(work / f"round-{number}", "steady", steady,
                                     lambda: queue_many_clients(server.port, "STEADY",
                                                                args.clients, args.each))
        cpu_after, child_after = server.cpu()
        out["cpu_us"] = (cpu_after - cpu_before) / steady * 1e6
        out["child_us"] = (child_after - child_before) / steady * 1e6

        def one_client() -> float:
            latencies = queue_one_client(server.port, [f"ONE.{n}" for n in range(ONE)])
            return len(latencies) / sum(latencies)

        cpu_before, _ = server.cpu()
        out["one"] = against_loop(work / f"round-{number}", "one", ONE, one_client)
        out["one_cpu_us"] = (server.cpu()[0] - cpu_before) / ONE * 1e6
        queued = 1 + 2 * steady + STEADY_FILL + ONE
        server.worst_stall()
        fill(server.port, max(0, ACTIVE - queued), "ACTIVE-FILL")
        _, mine, only = active_against_encode_only(server.port, work / f"round-{number}", 20)
        out["active"] = mine / only
        fill(server.port, max(0, args.queued - max(queued, ACTIVE)), "STALL-FILL")
        out["stall_fill_ms"] = server.worst_stall() * 1e3
        server.collect()
        out["stall_gc_ms"] = server.worst_stall() * 1e3
        out["rss_mib"] = server.ps.memory_info().rss / MIB

        status = Rpc(server.port).call("/daq/GetDaqStatus", "COLD.0.0")
        floor, floor_port = json_floor(json.dumps(status, separators=(",", ":")).encode())
        try:
            out["status"] = against_floor(server.port, floor_port, "/daq/GetDaqStatus",
                                          ["COLD.0.0"])  # fmt: skip
            out["storage"] = against_floor(server.port, floor_port, "/dpm/QueryStorageStatus", [])
        finally:
            floor.kill()
            floor.wait()
    finally:
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--each", type=int, default=30, help="QueueDaq per client per burst")
    parser.add_argument("--queued", type=int, default=13_000)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dpmd-bench-reactor-", dir=args.dir)).resolve()
    print(f"work directory {work}; {psutil.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    try:
        rounds = [one_round(work, args, number) for number in range(args.rounds)]
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    def column(key: str) -> list[float]:
        return [result[key] for result in rounds]

    burst = args.clients * args.each
    print(f"\n1. QueueDaq against the fsync loop ({args.rounds} rounds):")
    print(summary("a. one client", column("one")))
    print(summary(f"b. {args.clients} clients, a cold burst of {burst}", column("cold")))
    print(f"      (the cold bursts ended {max(column('cold_after')):.1f} s after the start "
          "at the latest)")  # fmt: skip
    print(summary(f"c. {args.clients} clients, steady state", column("steady")))
    print("\n2. processor per QueueDaq, µs:")
    print(summary("server (user + system), one client", column("one_cpu_us"), "lower"))
    print(summary(f"server (user + system), {args.clients} clients", column("cpu_us"),
                  "lower"))  # fmt: skip
    print(summary(f"vetting child, {args.clients} clients", column("child_us"), "lower"))
    print(f"\n3. longest reactor stall, ms, {args.queued} DAQs queued:")
    print(summary("while they are queued", column("stall_fill_ms"), "lower"))
    print(summary("a full collection forced", column("stall_gc_ms"), "lower"))
    print("\n4. pipelined, against the json floor:")
    print(summary("GetDaqStatus", column("status")))
    print(summary("QueryStorageStatus", column("storage")))
    print(f"\n5. GetActiveDaqs of {ACTIVE} against encode-only (lower is better):")
    print(summary("time ratio", column("active"), "lower"))
    print(summary(f"RSS with {args.queued} queued, MiB", column("rss_mib"), "lower"))


if __name__ == "__main__":
    main()
