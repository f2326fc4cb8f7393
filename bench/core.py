"""Benchmark: the DAQ core — durable QueueDaq, flat cost at 10,000 DAQs, a long history.

    python bench/core.py [--requests 2000] [--clients 20] [--queued 10000]
                         [--archived 1000000] [--dir DIR] [--keep]

Every figure is a ratio against a baseline measured in the same run (machines
here are noisy):

1. QueueDaq/s in 5 rounds that alternate with the baseline (each ratio is a
   round's; the median is shown), one client (each request answered before the
   next is sent) and
   ``--clients`` concurrent clients, against a loop of write + fsync + rename +
   fsync-dir (the least one durable acknowledgement costs on this disk);
2. QueueDaq latency with ``--queued`` DAQs queued, against the same on a server
   that has just started (two servers, in 5 rounds that alternate them);
3. ``GetActiveDaqs`` of ``--queued`` DAQs, against a Twisted line server that
   holds the same list and only encodes it for each request;
4. server RSS with ``--queued`` DAQs queued;
5. restart with ``--queued`` unfinished DAQs, against a start on an empty workspace;
6. start and RSS with ``--archived`` archived DAQs in the store, against empty.

The DAQs queued here wait: the first one names a source that does not exist,
so it is blocked in Collecting and keeps the one ``limits.daq`` slot.
Not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import selectors
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import Rpc, durable_rename, small_spec, start_server  # noqa: E402
from dpmd.model import DaqSubState  # noqa: E402
from dpmd.record import DaqRecord  # noqa: E402

MIB = 1 << 20
ROUNDS = 5

ENCODE_ONLY_SERVER = """
import json, sys
from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
statuses = json.load(open(sys.argv[1]))

class Encoder(LineOnlyReceiver):
    delimiter = b"\\n"
    MAX_LENGTH = 1 << 24
    def lineReceived(self, line):
        request = json.loads(line)
        reply = {"jsonrpc": "2.0", "id": request["id"], "result": statuses}
        self.sendLine(json.dumps(reply, separators=(",", ":")).encode())

port = reactor.listenTCP(0, Factory.forProtocol(Encoder), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:5.2f}"


def fsync_loop(directory: Path, count: int) -> float:
    directory.mkdir()
    start = time.perf_counter()
    for number in range(count):
        durable_rename(directory, f"B.{number}.json", small_spec(f"B.{number}"))
    return count / (time.perf_counter() - start)


def queue_one_client(port: int, names: list[str]) -> list[float]:
    """Latencies (s) of QueueDaq requests sent one after the other on one connection."""
    rpc = Rpc(port)
    latencies = []
    for name in names:
        spec = small_spec(name).decode()
        start = time.perf_counter()
        rpc.call("/daq/QueueDaq", spec)
        latencies.append(time.perf_counter() - start)
    rpc.close()
    return latencies


def queue_many_clients(port: int, prefix: str, clients: int, each: int) -> float:
    """QueueDaq/s of ``clients`` connections, each sending ``each`` one after the other.

    One selector loop drives them all: each connection sends its next request as
    soon as its reply is in.  (Twenty threads of this process did the same at twice
    the processor per request, taken from the two cores the server runs on, and
    their hand-offs of the interpreter lock delayed the next requests.)
    """
    selector = selectors.DefaultSelector()
    requests: dict[socket.socket, list[bytes]] = {}
    for client in range(clients):
        connection = socket.create_connection(("127.0.0.1", port))
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        requests[connection] = [request_line(n, small_spec(f"{prefix}.{client}.{n}"))
                                for n in range(each)][::-1]  # fmt: skip
        selector.register(connection, selectors.EVENT_READ, bytearray())
    start = time.perf_counter()
    for connection, lines in requests.items():
        connection.sendall(lines.pop())
    open_connections = clients
    while open_connections:
        for key, _ in selector.select():
            connection, received = cast(socket.socket, key.fileobj), key.data
            data = connection.recv(1 << 16)
            if not data:
                raise ConnectionError("dpmd closed the connection")
            received += data
            while (end := received.find(b"\n")) != -1:
                reply = json.loads(received[:end])
                del received[: end + 1]
                if "id" not in reply:
                    continue  # a notification
                if "error" in reply:
                    raise RuntimeError(f"{reply['error']}")
                if requests[connection]:
                    connection.sendall(requests[connection].pop())
                else:
                    selector.unregister(connection)
                    connection.close()
                    open_connections -= 1
    return clients * each / (time.perf_counter() - start)


def request_line(request_id: int, specification: bytes) -> bytes:
    request = {"jsonrpc": "2.0", "id": request_id, "method": "/daq/QueueDaq",
               "params": [specification.decode()]}  # fmt: skip
    return json.dumps(request).encode() + b"\n"


def latency_against_a_new_server(port: int, work: Path, each: int) -> tuple[float, float, float]:
    """Median QueueDaq latency (s) on a server just started and on ``port``, and their ratio.

    The two are taken in rounds that alternate, so that the disk and the
    neighbours weigh on both alike (the ratio is the median of the rounds').
    The new server's first DAQ blocks in Collecting, as on the other.
    """
    folder = work / "new-server"
    folder.mkdir()
    config = folder / "dpmd.yaml"
    config.write_text((work / "dpmd.yaml").read_text())
    process, new_port = start_server(folder, config)
    try:
        queue_one_client(new_port, ["BLOCKER"])
        news, lates, ratios = [], [], []
        for number in range(ROUNDS):
            new = statistics.median(queue_one_client(
                new_port, [f"NEW.{number}.{n}" for n in range(each)]))  # fmt: skip
            late = statistics.median(queue_one_client(
                port, [f"LATE.{number}.{n}" for n in range(each)]))  # fmt: skip
            news.append(new)
            lates.append(late)
            ratios.append(late / new)
    finally:
        stop(process, new_port)
    return statistics.median(news), statistics.median(lates), statistics.median(ratios)


def fill(port: int, count: int, prefix: str = "FILL") -> None:
    """``count`` DAQs queued, pipelined in batches of 500 on one connection."""
    rpc = Rpc(port)
    for first in range(0, count, 500):
        ids = [rpc.send("/daq/QueueDaq", small_spec(f"{prefix}.{n}").decode())
               for n in range(first, min(count, first + 500))]  # fmt: skip
        for request_id in ids:
            rpc.reply(request_id)
    rpc.close()


def timed_calls(port: int, method: str, calls: int) -> float:
    """Median seconds of ``calls`` calls of ``method`` on one connection."""
    rpc = Rpc(port)
    rpc.call(method)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        rpc.call(method)
        times.append(time.perf_counter() - start)
    rpc.close()
    return statistics.median(times)


def encode_only_server(statuses: list[Any], work: Path) -> tuple[subprocess.Popen[str], int]:
    path = work / "statuses.json"
    path.write_text(json.dumps(statuses))
    process = subprocess.Popen([sys.executable, "-c", ENCODE_ONLY_SERVER, str(path)],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def active_against_encode_only(port: int, work: Path, calls: int) -> tuple[list[Any], float, float]:
    """The server's active DAQs, and the median seconds of a ``GetActiveDaqs`` of them
    there and on a server that only encodes the same list."""
    rpc = Rpc(port)
    statuses = rpc.call("/daq/GetActiveDaqs")
    rpc.close()
    encoder, encoder_port = encode_only_server(statuses, work)
    try:
        ours = timed_calls(port, "/daq/GetActiveDaqs", calls)
        only = timed_calls(encoder_port, "/daq/GetActiveDaqs", calls)
    finally:
        encoder.kill()
        encoder.wait()
    return statuses, ours, only


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def timed_start(work: Path, config: Path) -> tuple[subprocess.Popen[bytes], int, float]:
    start = time.perf_counter()
    process, port = start_server(work, config)
    return process, port, time.perf_counter() - start


def stop(process: subprocess.Popen[bytes], port: int) -> None:
    rpc = Rpc(port)
    rpc.call("/dpm/Exit")
    rpc.close()
    process.wait(timeout=120)


def archived_history(workspace: Path, count: int) -> None:
    """A store holding ``count`` archived DAQs, written directly (as years of nights would)."""
    from dpmd.daq.persist.store import Store

    workspace.mkdir(parents=True)
    with Store(workspace / "dpmd.sqlite3") as store:
        store.create_schema()
    record = DaqRecord(id="X", file_id="X", seq=0, substate=DaqSubState.Completed,
                       queued_at=1.0, timestamp=2.0, message="product released",
                       history=tuple({"substate": s, "timestamp": 1.0, "event": "e",
                                      "message": "m"}
                                     for s in ("Scheduled", "Collecting", "Merging",
                                               "Releasing", "Completed")))  # fmt: skip
    template = record.to_json()
    spec = small_spec("X")
    db = sqlite3.connect(workspace / "dpmd.sqlite3")
    db.execute("PRAGMA synchronous=OFF")
    rows = (
        (n, f"H.{n}", spec, json.dumps({**template, "id": f"H.{n}", "seq": n}), "Completed",
         1.0 + n, 1)
        for n in range(1, count + 1)
    )  # fmt: skip
    db.executemany("INSERT INTO daq (seq, id, specification, record, substate, finished_at,"
                   " archived) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)  # fmt: skip
    db.commit()
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="QueueDaq per measurement, over 5 rounds")  # fmt: skip
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients")
    parser.add_argument("--queued", type=int, default=10_000, help="DAQs queued")
    parser.add_argument("--archived", type=int, default=1_000_000, help="archived DAQs")
    parser.add_argument("--dir", default=None, help="work directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dpmd-bench-core-", dir=args.dir)).resolve()
    config = work / "dpmd.yaml"
    config.write_text("listen: ['tcp:0:interface=127.0.0.1']\nlimits: {daq: 1}\n")
    try:
        run(args, work, config)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, config: Path) -> None:
    print(f"work directory {work}; {psutil.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    process, port, empty_start = timed_start(work, config)
    empty_rss = rss(process.pid)
    queue_one_client(port, ["BLOCKER"])  # it blocks in Collecting: the rest stays queued
    # Rounds alternate the baseline and the server, so that what the neighbours of a
    # shared machine do weighs on both alike; each ratio is a round's, their median shown.
    rounds, share = ROUNDS, max(1, args.requests // ROUNDS)
    each = max(1, 2 * share // args.clients)  # long enough that connecting does not weigh
    loops, ones, manys = [], [], []
    for number in range(rounds):
        loops.append(fsync_loop(work / f"fsync-loop-{number}", share))
        latencies = queue_one_client(port, [f"ONE.{number}.{n}" for n in range(share)])
        ones.append(len(latencies) / sum(latencies))
        manys.append(queue_many_clients(port, f"MANY.{number}", args.clients, each))
    loop, one, many = (statistics.median(rates) for rates in (loops, ones, manys))
    one_ratio = statistics.median(o / b for o, b in zip(ones, loops, strict=True))
    many_ratio = statistics.median(m / b for m, b in zip(manys, loops, strict=True))
    print(f"\n1. QueueDaq, each durable before it is answered ({rounds} rounds of {share} "
          f"requests, {each} per client with {args.clients}; medians):")  # fmt: skip
    print(f"   write+fsync+rename+fsync-dir loop   {loop:8.0f} /s   (baseline)")
    print(f"   QueueDaq, one client                {one:8.0f} /s   ratio {one_ratio:5.2f}")
    print(f"   QueueDaq, {args.clients} clients               {many:8.0f} /s   "
          f"ratio {many_ratio:5.2f}")  # fmt: skip

    queued = 1 + rounds * (share + args.clients * each)
    fill(port, max(0, args.queued - queued))  # --queued in all, then the latency is taken
    early_median, late_median, latency_ratio = latency_against_a_new_server(port, work, share)
    print(f"\n2. QueueDaq latency: {early_median * 1e3:.2f} ms on a new server, "
          f"{late_median * 1e3:.2f} ms with {args.queued} queued: ratio "
          f"{latency_ratio:5.2f}")  # fmt: skip

    statuses, ours, floor = active_against_encode_only(port, work, 30)
    print(f"\n3. GetActiveDaqs of {len(statuses)} DAQs: {ours * 1e3:.1f} ms; an encode-only "
          f"server {floor * 1e3:.1f} ms: ratio {ratio(ours, floor)}")  # fmt: skip
    queued_rss = rss(process.pid)
    print(f"\n4. server RSS: {empty_rss / MIB:.1f} MiB empty, {queued_rss / MIB:.1f} MiB with "
          f"{len(statuses)} DAQs queued")  # fmt: skip
    stop(process, port)

    process, port, full_start = timed_start(work, config)
    print(f"\n5. start: {empty_start:.2f} s on an empty workspace, {full_start:.2f} s with "
          f"{len(statuses)} unfinished DAQs: ratio {ratio(full_start, empty_start)}")  # fmt: skip
    stop(process, port)

    history = work / "history"
    started = time.perf_counter()
    archived_history(history / "dpm", args.archived)
    print(f"\n6. wrote {args.archived} archived records in {time.perf_counter() - started:.0f} s "
          f"({(history / 'dpm' / 'dpmd.sqlite3').stat().st_size / MIB:.0f} MiB)")  # fmt: skip
    empty = work / "empty"
    empty.mkdir()
    empty_process, empty_port, baseline = timed_start(empty, config)
    baseline_rss = rss(empty_process.pid)
    stop(empty_process, empty_port)
    history_process, history_port, long_start = timed_start(history, config)
    history_rss = rss(history_process.pid)
    lookup = timed_calls(history_port, "/daq/GetActiveDaqs", 10)
    rpc = Rpc(history_port)
    start = time.perf_counter()
    found = rpc.call("/daq/GetDaqStatus", f"H.{args.archived // 2}")
    archived_lookup = time.perf_counter() - start
    rpc.close()
    stop(history_process, history_port)
    print(f"   start {baseline:.2f} s empty, {long_start:.2f} s with {args.archived} archived: "
          f"ratio {ratio(long_start, baseline)}")  # fmt: skip
    print(f"   RSS {baseline_rss / MIB:.1f} MiB empty, {history_rss / MIB:.1f} MiB with the "
          f"history: {(history_rss - baseline_rss) / MIB:+.1f} MiB")  # fmt: skip
    print(f"   GetDaqStatus of an archived DAQ: {archived_lookup * 1e3:.1f} ms "
          f"({found['substate']}); GetActiveDaqs {lookup * 1e3:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
