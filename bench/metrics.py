"""Benchmark: what the metrics cost — a scrape with many DAQs queued, and each status event.

    python bench/metrics.py [--daqs 1000] [--scrapes 200] [--events 200000] [--dir DIR] [--keep]

1. **Scrape.** A real server (``twistd --nodaemon dpmd``) with ``metrics.listen``
   on a free port of 127.0.0.1, in a new temporary directory.  ``--scrapes``
   ``GET /metrics`` with no DAQ queued, then ``--daqs`` DAQs queued whose
   source does not exist (the first one fails collecting and keeps the
   ``limits.daq`` slot, so the others stay ``Scheduled``), then the same
   scrapes again; each is a new HTTP connection made with the standard
   library, timed by the client.  Printed: median and p99 of each phase and
   their ratio (1.0 means the scrape does not grow with the DAQs).
2. **Events.** In this process: ``DaqTally.send_notification`` on real
   ``/daq/status`` texts (a status change of a DAQ among ``N`` tracked ones,
   N = 10 and N = 100,000), against the floor ``json.loads`` of the same
   texts, measured in the same run.  Printed: nanoseconds per event and the
   ratios.
3. **Render.** In this process: the page's text made from a registry like the
   server's (every family, the server's ten methods) while the tally follows 0
   and ``--daqs`` Scheduled DAQs: the reactor's share of a scrape, without the
   HTTP around it.
4. **RPC observer.** In this process: ``Dispatcher.answer`` of a
   ``GetDaqStatus`` line (a plain, pre-encoded result) without an observer and
   with the metrics' one, in turn: microseconds per request and the ratio.

Not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Rpc, small_spec, start_server
from dpmd.daq.persist.committer import STATUS_TOPIC
from dpmd.encoding import PreEncoded
from dpmd.metrics.daqs import DaqTally
from dpmd.model import AlertSeverity, DaqAlert, DaqStatus, DaqSubState


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape_times(port: int, count: int) -> tuple[list[float], int]:
    """Seconds of each ``GET /metrics`` (connect to last byte) and the body's size."""
    times, size = [], 0
    for _ in range(count):
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read()
        connection.close()
        times.append(time.perf_counter() - started)
        size = len(body)
        assert response.status == 200, response.status
    return times, size


def p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99) - 1]


def wait_until_queued(port: int, expected: int) -> None:
    """Until the metrics show every DAQ but the blocked one Scheduled."""
    line = f"dpmd_queue_depth {float(expected)}"
    for _ in range(6000):
        connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.request("GET", "/metrics")
        if line in connection.getresponse().read().decode():
            return
        time.sleep(0.01)
    raise SystemExit("the DAQs never all showed as queued")


def scrape_phase(args: argparse.Namespace, directory: Path) -> None:
    metrics_port = free_port()
    config = directory / "dpmd.yaml"
    endpoint = f"tcp:{metrics_port}:interface=127.0.0.1"
    config.write_text(f'listen: ["tcp:0:interface=127.0.0.1"]\nmetrics:\n  listen: "{endpoint}"\n')
    process, port = start_server(directory, config)
    try:
        scrape_times(metrics_port, 20)  # warm up
        empty, empty_size = scrape_times(metrics_port, args.scrapes)
        rpc = Rpc(port)
        ids = [rpc.send("/daq/QueueDaq", small_spec(f"BENCH.{n}").decode())
               for n in range(args.daqs)]  # fmt: skip
        for request_id in ids:
            rpc.reply(request_id)
        wait_until_queued(metrics_port, args.daqs - 1)
        full, full_size = scrape_times(metrics_port, args.scrapes)
        rpc.close()
    finally:
        process.terminate()
        process.wait(60)
    print(f"scrape, {args.scrapes} GET /metrics each (client-timed, new connection each):")
    for name, times, size in (("no DAQ", empty, empty_size),
                              (f"{args.daqs} DAQs", full, full_size)):  # fmt: skip
        print(f"  {name:>10}: median {statistics.median(times) * 1e3:.2f} ms, "
              f"p99 {p99(times) * 1e3:.2f} ms, {size} bytes")
    print(f"  ratio {args.daqs} DAQs / none: median "
          f"{statistics.median(full) / statistics.median(empty):.2f}, "
          f"p99 {p99(full) / p99(empty):.2f}")


def statuses(tracked: int) -> tuple[DaqTally, list[PreEncoded]]:
    """A tally following ``tracked`` DAQs, and status texts that move them along."""
    tally = DaqTally()
    alert = DaqAlert("SourceFileCollectionError", "dcs", AlertSeverity.Error,
                     "source dcs: /nonexistent/dcs.fits does not exist", 1.0, False, 1)  # fmt: skip
    for n in range(tracked):
        tally.send_notification(STATUS_TOPIC, PreEncoded.of(
            DaqStatus(f"BENCH.{n}", f"BENCH.{n}", DaqSubState.Scheduled, timestamp=1.0).to_json()))
    cycle = [(DaqSubState.Collecting, ()), (DaqSubState.Collecting, (alert,)),
             (DaqSubState.Collecting, ()), (DaqSubState.Merging, ()),
             (DaqSubState.Releasing, ()), (DaqSubState.Scheduled, ())]  # fmt: skip
    texts = [PreEncoded.of(DaqStatus(f"BENCH.{n % tracked}", f"BENCH.{n % tracked}", substate,
                                     alerts, "a message of ordinary length", "",
                                     2.0).to_json())
             for n in range(600) for substate, alerts in [cycle[n % len(cycle)]]]  # fmt: skip
    return tally, texts


def per_event(function: object, texts: list[PreEncoded], events: int) -> float:
    call = function
    rounds = max(1, events // len(texts))
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(rounds):
            for text in texts:
                call(text)  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best / (rounds * len(texts)) * 1e9


def event_phase(args: argparse.Namespace) -> None:
    import json

    print(f"per /daq/status event (best of 3 x {args.events} events):")
    floor = None
    for tracked in (10, 100_000):
        tally, texts = statuses(tracked)
        if floor is None:
            floor = per_event(lambda text: json.loads(text.json), texts, args.events)
            print(f"  json.loads floor: {floor:.0f} ns")
        cost = per_event(lambda text, tally=tally: tally.send_notification(STATUS_TOPIC, text),
                         texts, args.events)  # fmt: skip
        print(f"  tally, {tracked:>6} DAQs tracked: {cost:.0f} ns ({cost / floor:.2f} x floor)")


def render_phase(args: argparse.Namespace) -> None:
    from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
    from twisted.internet.task import Clock

    from dpmd.metrics.families import RpcMetrics, StageMetrics, StateCollector
    from dpmd.model import StorageStatus

    methods = ["/dpm/QueryStorageStatus", "/dpm/Exit", "/daq/QueueDaq", "/daq/AbortDaq",
               "/daq/RetryMergeDaq", "/daq/GetDaqStatus", "/daq/GetActiveDaqs",
               "/daq/GetInternalDaqStatus", "Subscribe", "Unsubscribe"]  # fmt: skip
    print("render of /metrics in this process (best of 3 x 100):")
    times = []
    for daqs in (0, args.daqs):
        tally, _ = statuses(max(daqs, 1)) if daqs else (DaqTally(), [])
        registry = CollectorRegistry(auto_describe=False)
        StageMetrics(registry)
        RpcMetrics(registry, methods)
        sample = (StorageStatus("/w", 1 << 40, 1 << 39, 1 << 38, 0.0), 1 << 35)
        registry.register(StateCollector(tally, Clock(), lambda sample=sample: sample, list, "1"))
        ProcessCollector(registry=registry)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(100):
                text = generate_latest(registry)
            best = min(best, (time.perf_counter() - started) / 100)
        times.append(best)
        samples = text.count(b"\n") - text.count(b"# ")
        print(f"  {daqs:>6} DAQs: {best * 1e3:.2f} ms, {len(text)} bytes, {samples} samples")
    print(f"  ratio: {times[1] / times[0]:.2f}")


def observer_phase() -> None:
    from prometheus_client import CollectorRegistry
    from twisted.internet import reactor

    from dpmd.metrics.families import RpcMetrics
    from dpmd.rpc.dispatch import Dispatcher
    from dpmd.rpc.methods import Method, Param, string_param

    status = PreEncoded.of(DaqStatus("BENCH.1", "BENCH.1", DaqSubState.Scheduled).to_json())
    table = {"/daq/GetDaqStatus": Method("/daq/GetDaqStatus", lambda id: status,
                                         (Param("id", string_param),))}  # fmt: skip
    rpc = RpcMetrics(CollectorRegistry(), list(table))
    plain = Dispatcher(table)
    observed = Dispatcher(table, observe=rpc.observe, clock=reactor)  # type: ignore[arg-type]
    line = b'{"jsonrpc":"2.0","id":7,"method":"/daq/GetDaqStatus","params":["BENCH.1"]}'
    best = {"without": float("inf"), "with": float("inf")}
    for _ in range(3):
        for name, dispatcher in (("without", plain), ("with", observed)):
            started = time.perf_counter()
            for _ in range(50_000):
                dispatcher.answer(line)
            best[name] = min(best[name], (time.perf_counter() - started) / 50_000)
    print("dispatch of one GetDaqStatus line (best of 3 x 50000):")
    print(f"  without observer {best['without'] * 1e6:.2f} us, with {best['with'] * 1e6:.2f} us "
          f"(ratio {best['with'] / best['without']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daqs", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--dir", help="where to make the server's directory")
    parser.add_argument("--keep", action="store_true", help="keep the server's directory")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="dpmd-bench-metrics-", dir=args.dir))
    try:
        event_phase(args)
        render_phase(args)
        observer_phase()
        scrape_phase(args, directory)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
