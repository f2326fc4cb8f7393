"""The metrics endpoint end to end: a real server, the real merger, astropy sources, HTTP."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor, tcp
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from dpmd.config import build_config
from dpmd.server import StartupError
from dpmd.tap import build_service
from tests.fitsfactory import write_fits
from tests.rpcclient import RpcError, connect, start_server
from tests.test_daq_integration import product_spec

LOCAL = "tcp:0:interface=127.0.0.1"
DASHBOARD = Path(__file__).parent.parent / "etc" / "grafana-dpmd.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class _Reader(Protocol):
    """HTTP/1.0 by hand: one request, everything until the server closes."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.data = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.done.callback(self.data)


@inlineCallbacks
def http_get(port: int, path: str = "/metrics", accept: str = "") -> Any:
    """(status code, headers, body) of ``GET path`` on 127.0.0.1:port."""
    headers = f"Accept: {accept}\r\n" if accept else ""
    reader = _Reader(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), reader)
    raw = yield reader.done
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines)
    return int(status.split()[1]), fields, body.decode()


def samples_of(text: str) -> Samples:
    """Every sample of an exposition, parsed by prometheus_client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def listening_factories() -> list[Any]:
    """The factories of every TCP port this process listens on (on the tests' reactor)."""
    return [reader.factory for reader in reactor.getReaders() if isinstance(reader, tcp.Port)]


class MetricsEndToEnd(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()
        self.inbox = self.root / "olas"
        self.inbox.mkdir()

    @inlineCallbacks
    def scrape(self) -> Any:
        assert self.service.metrics is not None and self.service.metrics.port is not None
        code, headers, body = yield http_get(self.service.metrics.port.getHost().port)
        self.assertEqual(code, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"))
        return samples_of(body)

    @inlineCallbacks
    def until(self, condition: Any) -> Any:
        for _ in range(3000):
            if condition():
                return
            yield deferLater(reactor, 0.02, lambda: None)
        self.fail("the condition never held")

    def spec(self, daq_id: str, **extra: Any) -> dict[str, Any]:
        receivers = [{"type": "olasReceiver", "path": str(self.inbox)}]
        return product_spec(daq_id, self.root, receivers=receivers, **extra)

    def source_bytes(self, spec: dict[str, Any]) -> int:
        return sum(os.path.getsize(self.root / source["location"])
                   for source in spec["sources"] if source["type"] == "fitsFile")  # fmt: skip

    @inlineCallbacks
    def test_scrape_matches_what_the_daqs_did(self) -> None:
        self.service, caller = yield start_server(self, self.root, **{"metrics.listen": LOCAL})
        self.assertTrue(any(isinstance(f, Site) for f in listening_factories()))

        # One DAQ all the way.
        first = self.spec("MET.1")
        yield caller.call("/daq/QueueDaq", first)
        yield caller.wait_for("MET.1", "Completed")

        # One with a missing source: it fails collecting and keeps its slot, so the next
        # one waits in the queue.
        late = self.root / "late.fits"
        failing = self.spec("MET.2")
        failing["sources"].append({"type": "fitsFile", "sourceName": "late",
                                   "location": str(late)})  # fmt: skip
        yield caller.call("/daq/QueueDaq", failing)
        yield self.until(lambda: any(s["error"] for s in caller.statuses("MET.2")))
        before_queueing = reactor.seconds()
        waiting = self.spec("MET.3")
        yield caller.call("/daq/QueueDaq", waiting)
        with self.assertRaises(RpcError):  # a refused QueueDaq: outcome -32000
            yield caller.call("/daq/QueueDaq", {**waiting, "sources": waiting["sources"][:1]})
        with self.assertRaises(RpcError):
            yield caller.call("/daq/NoSuchMethod")

        during = yield self.scrape()
        self.assertEqual(value(during, "dpmd_daqs", substate="Collecting"), 1)
        self.assertEqual(value(during, "dpmd_daqs", substate="Scheduled"), 1)
        self.assertEqual(value(during, "dpmd_daqs", substate="Merging"), 0)
        self.assertEqual(value(during, "dpmd_queue_depth"), 1)
        age = value(during, "dpmd_queue_oldest_age_seconds")
        self.assertTrue(0 <= age <= reactor.seconds() - before_queueing, age)
        self.assertEqual(value(during, "dpmd_alerts", category="SourceFileCollectionError",
                               severity="Error"), 1)  # fmt: skip
        self.assertEqual(value(during, "dpmd_daqs_finished_total", substate="Completed"), 1)
        self.assertEqual(value(during, "dpmd_stage_duration_seconds_count",
                               stage="collecting", outcome="failed"), 1)  # fmt: skip
        self.assertEqual(value(during, "dpmd_stage_retries_total", stage="collecting"), 0)
        rpc = "dpmd_rpc_request_duration_seconds_count"
        self.assertEqual(value(during, rpc, method="/daq/QueueDaq", outcome="ok"), 3)
        self.assertEqual(value(during, rpc, method="/daq/QueueDaq", outcome="-32000"), 1)
        self.assertEqual(value(during, rpc, method="other", outcome="-32601"), 1)
        self.assertEqual(value(during, rpc, method="Subscribe", outcome="ok"), 1)

        # The source appears; the retry runs collecting a second time; both complete.
        write_fits(str(late), [("HIERARCH ESO TEL AIRM START", 1.2)])
        failing_bytes = self.source_bytes(failing)
        yield caller.call("/daq/RetryMergeDaq", "MET.2")
        for daq_id in ("MET.1", "MET.2", "MET.3"):
            yield caller.wait_archived(daq_id)
        after = yield self.scrape()

        for substate in ("Scheduled", "Collecting", "Merging", "Releasing", "Aborting"):
            self.assertEqual(value(after, "dpmd_daqs", substate=substate), 0, substate)
        self.assertEqual(value(after, "dpmd_queue_depth"), 0)
        self.assertEqual(value(after, "dpmd_queue_oldest_age_seconds"), 0)
        self.assertEqual(value(after, "dpmd_alerts", category="SourceFileCollectionError",
                               severity="Error"), 0)  # fmt: skip
        self.assertEqual(value(after, "dpmd_daqs_finished_total", substate="Completed"), 3)
        self.assertEqual(value(after, "dpmd_daqs_finished_total", substate="Aborted"), 0)
        duration = "dpmd_stage_duration_seconds_count"
        for stage in ("collecting", "merging", "releasing"):
            self.assertEqual(value(after, duration, stage=stage, outcome="succeeded"), 3, stage)
        self.assertEqual(value(after, duration, stage="collecting", outcome="failed"), 1)
        self.assertEqual(value(after, duration, stage="merging", outcome="failed"), 0)
        self.assertEqual(value(after, "dpmd_stage_retries_total", stage="collecting"), 1)
        self.assertEqual(value(after, "dpmd_stage_retries_total", stage="merging"), 0)
        products = sum(os.path.getsize(self.inbox / f"MET.{n}.fits") for n in (1, 2, 3))
        collected = self.source_bytes(first) + failing_bytes + self.source_bytes(waiting)
        self.assertEqual(value(after, "dpmd_stage_bytes_total", stage="collecting"), collected)
        self.assertEqual(value(after, "dpmd_stage_bytes_total", stage="merging"), products)
        self.assertEqual(value(after, "dpmd_stage_bytes_total", stage="releasing"), products)
        self.assertEqual(value(after, rpc, method="/daq/RetryMergeDaq", outcome="ok"), 1)
        self.assertEqual(value(after, "dpmd_children", kind="merge"), 0)
        capacity = value(after, "dpmd_workspace_capacity_bytes")
        statvfs = os.statvfs(self.root / "dpm")
        self.assertEqual(capacity, statvfs.f_blocks * statvfs.f_frsize)
        self.assertEqual(value(after, "dpmd_workspace_reserve_bytes"), int(capacity * 0.05))
        self.assertLessEqual(value(after, "dpmd_workspace_available_bytes"),
                             value(after, "dpmd_workspace_free_bytes"))  # fmt: skip
        self.assertEqual(value(after, "dpmd_build_info", version=_version()), 1)

        # OpenMetrics for a scraper that asks for it, parsed by its own parser.
        port = self.service.metrics.port.getHost().port
        code, headers, body = yield http_get(port, accept="application/openmetrics-text")
        self.assertTrue(headers["content-type"].startswith("application/openmetrics-text"))
        self.assertTrue(body.endswith("# EOF\n"))
        names = {family.name for family in openmetrics_families(body)}
        self.assertIn("dpmd_stage_duration_seconds", names)

        # Only /metrics is served.
        code, _, _ = yield http_get(port, path="/")
        self.assertEqual(code, 404)

        # Every metric the dashboard's queries use is in the endpoint's output.
        exposed = {name for name, _ in after}
        used = dashboard_metric_names()
        self.assertTrue(used)
        self.assertEqual(sorted(used - exposed), [])

    @inlineCallbacks
    def test_after_a_restart_it_counts_the_recovered_daqs(self) -> None:
        settings = {"dataroot": str(self.root), "listen": [LOCAL]}
        first = build_service(build_config(settings, environ={}), reactor)
        first.startService()
        stopped = False
        try:
            caller = yield connect(first.ports[0].getHost().port)
            yield caller.call("Subscribe", "/daq/status")
            blocked = self.spec("MET.R1")
            blocked["sources"].append({"type": "fitsFile", "sourceName": "late",
                                       "location": str(self.root / "late.fits")})  # fmt: skip
            yield caller.call("/daq/QueueDaq", blocked)
            yield self.until(lambda: any(s["error"] for s in caller.statuses("MET.R1")))
            yield caller.call("/daq/QueueDaq", self.spec("MET.R2"))
            queued = caller.statuses("MET.R2")[0]["timestamp"]
            caller.transport.loseConnection()
            yield first.stopService()
            stopped = True
        finally:
            if not stopped:
                yield first.stopService()
        self.service, _ = yield start_server(self, self.root, **{"metrics.listen": LOCAL})
        got = yield self.scrape()
        self.assertEqual(value(got, "dpmd_daqs", substate="Collecting"), 1)
        self.assertEqual(value(got, "dpmd_daqs", substate="Scheduled"), 1)
        self.assertEqual(value(got, "dpmd_queue_depth"), 1)
        age = value(got, "dpmd_queue_oldest_age_seconds")  # since it was queued, before the restart
        self.assertTrue(0 < age <= reactor.seconds() - queued, (age, queued))
        self.assertEqual(value(got, "dpmd_alerts", category="SourceFileCollectionError",
                               severity="Error"), 1)  # fmt: skip
        self.assertEqual(value(got, "dpmd_daqs_finished_total", substate="Completed"), 0)

    @inlineCallbacks
    def test_two_servers_in_one_process_count_apart(self) -> None:
        ones = []
        for name in ("a", "b"):
            root = self.root / name
            root.mkdir()
            service, caller = yield start_server(self, root, **{"metrics.listen": LOCAL})
            ones.append((service, caller))
        (first, caller), (second, _) = ones
        yield caller.call("/daq/GetActiveDaqs")
        self.assertIsNot(first.metrics.registry, second.metrics.registry)
        counts = []
        for service in (first, second):
            _, _, body = yield http_get(service.metrics.port.getHost().port)
            counts.append(value(samples_of(body), "dpmd_rpc_request_duration_seconds_count",
                                method="/daq/GetActiveDaqs", outcome="ok"))  # fmt: skip
        self.assertEqual(counts, [1, 0])


class MetricsOff(TestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()

    @inlineCallbacks
    def test_unset_nothing_listens(self) -> None:
        before = listening_factories()
        service, caller = yield start_server(self, self.root)
        self.assertIsNone(service.config.metrics_listen)
        self.assertIsNone(service.metrics)
        started = [f for f in listening_factories() if f not in before]
        self.assertEqual([type(f).__name__ for f in started], ["JsonRpcFactory"])
        self.assertFalse(any(isinstance(f, Site) for f in started))
        yield caller.call("/daq/GetActiveDaqs")  # the dispatcher works without an observer

    def test_empty_is_off(self) -> None:
        config = build_config({"dataroot": str(self.root), "metrics.listen": ""}, environ={})
        self.assertIsNone(config.metrics_listen)

    def test_bad_endpoint_stops_start_up_naming_the_key(self) -> None:
        config = build_config({"dataroot": str(self.root), "listen": [LOCAL],
                               "metrics.listen": "tcpp:9108"}, environ={})  # fmt: skip
        error = self.assertRaises(StartupError, build_service, config, reactor)
        self.assertIn("metrics.listen 'tcpp:9108' is not valid", str(error))

    def test_port_in_use_stops_start_up_naming_it(self) -> Deferred[None]:
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        endpoint = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        config = build_config({"dataroot": str(self.root), "listen": [LOCAL],
                               "metrics.listen": endpoint}, environ={})  # fmt: skip
        service = build_service(config, reactor)
        self.addCleanup(service.lock.release)
        error = self.assertRaises(StartupError, service.privilegedStartService)
        self.assertIn(f"cannot listen on {endpoint!r}", str(error))
        self.assertEqual(service.ports, [])  # the JSON-RPC listener was let go again
        return deferLater(reactor, 0, lambda: None)  # its socket closes on the next turn


class Dashboard(TestCase):
    def test_is_a_grafana_model_with_a_prometheus_datasource_variable(self) -> None:
        model = json.loads(DASHBOARD.read_text())
        variables = model["templating"]["list"]
        self.assertIn({"type": "datasource", "query": "prometheus"},
                      [{"type": v["type"], "query": v["query"]} for v in variables])  # fmt: skip
        panels = [panel for panel in model["panels"] if panel["type"] != "row"]
        self.assertTrue(all(panel["targets"] for panel in panels))
        ids = [panel["id"] for panel in model["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        titles = " ".join(panel["title"] for panel in panels).lower()
        for topic in ("queue", "bytes/s", "stage duration", "alerts", "storage", "children",
                      "rpc"):  # fmt: skip
            self.assertIn(topic, titles)


_IDENTIFIER = re.compile(r"\b(dpmd_[a-z_]+|process_[a-z_]+)\b")


def dashboard_metric_names() -> set[str]:
    """The metric names the dashboard's queries use (as the exposition spells them)."""
    model = json.loads(DASHBOARD.read_text())
    names: set[str] = set()
    for panel in model["panels"]:
        for target in panel.get("targets", ()):
            names.update(_IDENTIFIER.findall(target["expr"]))
    return names


def _version() -> str:
    import dpmd

    return dpmd.__version__
