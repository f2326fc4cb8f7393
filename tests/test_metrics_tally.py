"""The numbers behind /metrics, on a fake clock: the tally, the families, storage samples."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from dpmd.daq.events import StageEnded, StageObservers
from dpmd.daq.manager import STATUS_TOPIC
from dpmd.encoding import PreEncoded
from dpmd.metrics import MetricsService
from dpmd.metrics.daqs import DaqTally
from dpmd.metrics.families import StageMetrics, StateCollector
from dpmd.metrics.web import MetricsSite
from dpmd.model import AlertSeverity, DaqAlert, DaqStatus, DaqSubState, StorageStatus
from dpmd.storage import StorageMonitor
from dpmd.topics import TopicHub

S = DaqSubState
MISSING = DaqAlert("SourceFileCollectionError", "late", AlertSeverity.Error, "missing", 0.0)
STALLED = DaqAlert("StageStalled", "merge", AlertSeverity.Warning, "silent", 0.0)


def status(daq_id: str, substate: DaqSubState, at: float, *alerts: DaqAlert) -> PreEncoded:
    """A status as /daq/status carries it: its JSON text."""
    return PreEncoded.of(DaqStatus(daq_id, daq_id, substate, alerts, timestamp=at).to_json())


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[Any]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


class Tally(SynchronousTestCase):
    def setUp(self) -> None:
        self.tally = DaqTally()

    def hear(self, *statuses: PreEncoded) -> None:
        for params in statuses:
            self.tally.send_notification(STATUS_TOPIC, params, None)

    def test_substates_move_and_the_final_status_forgets(self) -> None:
        self.hear(status("A", S.Scheduled, 10), status("B", S.Scheduled, 20))
        self.assertEqual(self.tally.by_substate["Scheduled"], 2)
        self.hear(status("A", S.Collecting, 30), status("A", S.Merging, 31))
        self.assertEqual((self.tally.by_substate["Scheduled"], self.tally.by_substate["Merging"],
                          self.tally.by_substate["Collecting"]), (1, 1, 0))  # fmt: skip
        self.hear(status("A", S.Releasing, 32), status("A", S.Completed, 33))
        self.hear(status("B", S.Aborted, 34))
        self.assertEqual(set(self.tally.by_substate.values()), {0})
        self.assertEqual(self.tally.finished, {"Completed": 1, "Aborted": 1})
        self.assertEqual(self.tally._last, {})

    def test_alerts_follow_each_status_and_end_with_the_daq(self) -> None:
        self.hear(status("A", S.Collecting, 1, MISSING), status("B", S.Merging, 1, STALLED))
        self.hear(status("A", S.Collecting, 2, MISSING))  # the same alert again: still one
        self.assertEqual(self.tally.alerts, {("SourceFileCollectionError", "Error"): 1,
                                             ("StageStalled", "Warning"): 1})  # fmt: skip
        self.hear(status("A", S.Collecting, 3))  # retried: cleared
        self.hear(status("B", S.Aborting, 4, STALLED), status("B", S.Aborted, 5, STALLED))
        self.assertEqual(set(self.tally.alerts.values()), {0})

    def test_the_queue_is_the_scheduled_daqs_oldest_first(self) -> None:
        self.assertEqual((self.tally.queue_depth, self.tally.oldest_queued_age(100)), (0, 0))
        self.hear(status("A", S.Scheduled, 10), status("B", S.Scheduled, 20))
        self.hear(status("A", S.Scheduled, 15))  # a change while queued: still queued at 10
        self.assertEqual((self.tally.queue_depth, self.tally.oldest_queued_age(25)), (2, 15))
        self.hear(status("A", S.Collecting, 26))
        self.assertEqual((self.tally.queue_depth, self.tally.oldest_queued_age(26)), (1, 6))
        self.hear(status("C", S.Scheduled, 27), status("B", S.Aborted, 28))
        self.assertEqual((self.tally.queue_depth, self.tally.oldest_queued_age(30)), (1, 3))
        self.assertEqual(self.tally.oldest_queued_age(0), 0)  # the clock went back: never < 0

    def test_seeded_from_the_recovered_daqs_with_their_queue_times(self) -> None:
        recovered = [
            (DaqStatus("A", "A", S.Merging, (MISSING,), timestamp=50).to_json(), 5.0),
            (DaqStatus("B", "B", S.Scheduled, timestamp=60).to_json(), 6.0),
        ]
        self.tally.seed(recovered)
        self.assertEqual((self.tally.by_substate["Merging"], self.tally.queue_depth), (1, 1))
        self.assertEqual(self.tally.oldest_queued_age(10), 4)
        self.assertEqual(self.tally.alerts[("SourceFileCollectionError", "Error")], 1)

    def test_a_status_it_cannot_read_is_logged_never_raised(self) -> None:
        self.hear(PreEncoded(b'{"id": "A"}'))
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.hear(status("A", S.Scheduled, 1))
        self.assertEqual(self.tally.queue_depth, 1)


@dataclass
class Child:
    kind: str


class Families(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.tally = DaqTally()
        self.children: list[Child] = []
        self.storage: tuple[StorageStatus, int] | None = None
        self.registry = CollectorRegistry()
        self.registry.register(StateCollector(self.tally, self.clock, lambda: self.storage,
                                              lambda: self.children, "9.9"))  # fmt: skip
        self.stages = StageMetrics(self.registry)

    def test_state_gauges(self) -> None:
        self.clock.advance(100)
        self.tally.send_notification(STATUS_TOPIC, status("A", S.Scheduled, 40))
        self.tally.send_notification(STATUS_TOPIC, status("B", S.Collecting, 41, MISSING))
        self.children[:] = [Child("merge"), Child("rsync"), Child("rsync"), Child("scp")]
        got = scrape(self.registry)
        self.assertEqual(got[("dpmd_daqs", frozenset({("substate", "Scheduled")}))], 1)
        self.assertEqual(got[("dpmd_queue_depth", frozenset())], 1)
        self.assertEqual(got[("dpmd_queue_oldest_age_seconds", frozenset())], 60)
        self.assertEqual(got[("dpmd_alerts", frozenset({("category", "SourceFileCollectionError"),
                                                        ("severity", "Error")}))], 1)  # fmt: skip
        kinds = {dict(labels)["kind"]: count for (name, labels), count in got.items()
                 if name == "dpmd_children"}  # fmt: skip
        self.assertEqual(kinds, {"merge": 1, "rsync": 2, "scp": 1, "ssh": 0, "copy": 0,
                                 "digest": 0})  # fmt: skip
        self.children.clear()
        self.assertEqual(scrape(self.registry)[("dpmd_children", frozenset({("kind", "scp")}))], 0)
        self.assertEqual(got[("dpmd_build_info", frozenset({("version", "9.9")}))], 1)

    def test_storage_only_once_sampled(self) -> None:
        self.assertNotIn(("dpmd_workspace_free_bytes", frozenset()), scrape(self.registry))
        self.storage = (StorageStatus("/w", 1000, 400, 300, 7.0), 50)
        got = scrape(self.registry)
        for name, expected in (("capacity", 1000), ("free", 400), ("available", 300),
                               ("reserve", 50)):  # fmt: skip
            self.assertEqual(got[(f"dpmd_workspace_{name}_bytes", frozenset())], expected)
        self.assertEqual(got[("dpmd_workspace_sample_timestamp_seconds", frozenset())], 7)

    def test_stage_runs(self) -> None:
        observers = StageObservers()
        observers.add(self.stages.stage_ended)
        observers.tell(StageEnded("A", "collecting", False, 0.2, 1, 0, terminal=False))
        observers.tell(StageEnded("A", "collecting", True, 3.0, 2, 1000))
        observers.tell(StageEnded("A", "merging", True, 40.0, 1, 900))
        observers.tell(StageEnded("A", "releasing", True, 1.0, 1, 1800))
        got = scrape(self.registry)

        def sample(name: str, **labels: str) -> float:
            return got[(name, frozenset(labels.items()))]

        duration = "dpmd_stage_duration_seconds"
        self.assertEqual(sample(f"{duration}_count", stage="collecting", outcome="failed"), 1)
        self.assertEqual(sample(f"{duration}_count", stage="collecting", outcome="succeeded"), 1)
        self.assertEqual(sample(f"{duration}_sum", stage="merging", outcome="succeeded"), 40)
        self.assertEqual(sample(f"{duration}_bucket", stage="merging", outcome="succeeded",
                                le="30.0"), 0)  # fmt: skip
        self.assertEqual(sample(f"{duration}_bucket", stage="merging", outcome="succeeded",
                                le="60.0"), 1)  # fmt: skip
        self.assertEqual([sample("dpmd_stage_bytes_total", stage=stage)
                          for stage in ("collecting", "merging", "releasing")],
                         [1000, 900, 1800])  # fmt: skip
        self.assertEqual(sample("dpmd_stage_retries_total", stage="collecting"), 1)
        self.assertEqual(sample("dpmd_stage_retries_total", stage="merging"), 0)


@dataclass
class FakeManager:
    """What the metrics service reads of the DAQ manager."""

    registry: list[Any] = field(default_factory=list)
    pipeline: Any = None
    means: Any = None

    def __post_init__(self) -> None:
        self.pipeline = type("Pipeline", (), {"observers": StageObservers()})()
        self.means = type("Means", (), {"runner": type("Runner", (), {"running": set()})()})()


class StorageSamples(SynchronousTestCase):
    """A scrape shows the latest sample and asks for a new one, never waiting for it."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.hub = TopicHub()
        self.hub.add_topic(STATUS_TOPIC)
        self.asked: list[Deferred[os.statvfs_result]] = []
        self.storage = StorageMonitor("/w", self.reactor, self.hub, self.run_blocking,
                                      max_age=1.0, reserve=0.1)  # fmt: skip
        self.service = MetricsService("tcp:0:interface=127.0.0.1", self.reactor, self.hub,
                                      self.storage, FakeManager(), [])  # type: ignore[arg-type]

    def run_blocking(self, function: Any, *args: Any) -> Deferred[os.statvfs_result]:
        self.asked.append(Deferred())
        return self.asked[-1]

    def sample(self, blocks: int) -> os.statvfs_result:
        return os.statvfs_result((4096, 1024, blocks, blocks // 2, blocks // 4, 0, 0, 0, 0, 255))

    def free(self) -> float | None:
        """The free bytes a GET /metrics shows."""
        request = DummyRequest([b"metrics"])
        site = MetricsSite(self.service.registry, self.service.refresh_storage)
        page = site.getResourceFor(request)
        text = page.render(request).decode()
        self.assertTrue(request.responseHeaders.getRawHeaders(b"content-type")[0]
                        .startswith(b"text/plain"))  # fmt: skip
        free = [s.value for family in text_string_to_metric_families(text)
                for s in family.samples if s.name == "dpmd_workspace_free_bytes"]  # fmt: skip
        return free[0] if free else None

    def test_latest_sample_without_waiting(self) -> None:
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.assertEqual(len(self.asked), 1)  # asked at start
        self.assertIsNone(self.free())  # a scrape before the first sample: no number
        self.assertEqual(len(self.asked), 1)  # one sample at a time
        self.asked[0].callback(self.sample(1000))
        self.assertEqual(self.free(), 500 * 1024)
        got = scrape(self.service.registry)
        self.assertEqual(got[("dpmd_workspace_reserve_bytes", frozenset())], 100 * 1024)
        self.reactor.advance(5)  # stale now: the next scrape asks again, shows the old one
        self.assertEqual(self.free(), 500 * 1024)
        self.assertEqual(len(self.asked), 2)
        self.asked[1].callback(self.sample(2000))
        self.assertEqual(self.free(), 1000 * 1024)

    def test_a_failed_sample_is_logged_and_asked_again(self) -> None:
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.asked[0].errback(OSError(5, "Input/output error"))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertIsNone(self.free())
        self.assertEqual(len(self.asked), 2)

    def test_follows_the_status_topic_only_while_running(self) -> None:
        self.service.startService()
        self.assertEqual(self.hub.subscriber_count(STATUS_TOPIC), 1)
        self.hub.publish(STATUS_TOPIC, status("A", S.Scheduled, 0), "A")
        self.assertEqual(self.service.tally.queue_depth, 1)
        self.service.stopService()
        self.assertEqual(self.hub.subscriber_count(STATUS_TOPIC), 0)
