"""The metric families of one dpmd, on a registry of its own.

Two kinds: what happens (stage runs, RPC requests) is counted as it happens
into prometheus_client's own ``Histogram`` and ``Counter``; what *is* (DAQs
by substate, alerts, the queue, storage, children) is read at scrape time by
``StateCollector`` from numbers kept up to date elsewhere, each read O(1)
or bounded by the labels, never by the number of DAQs.

Every label set that can be known in advance is created at 0, so a series
exists from the first scrape (``rate()`` and the dashboard need no special
case for "never happened yet").
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.internet.interfaces import IReactorTime

from dpmd.daq.observers import StageEnded
from dpmd.metrics.daqs import DaqTally
from dpmd.model import StorageStatus

STAGES = ("collecting", "merging", "releasing")
STAGE_OUTCOMES = ("succeeded", "failed")
CHILD_KINDS = ("merge", "rsync", "ssh", "copy", "digest")
"""The kinds of child the stages run (``host.spawn``); any other is reported once seen."""
OTHER_METHOD = "other"
"""The ``method`` label of a request that names no method of the server."""

STAGE_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
"""Seconds: a stage of a small DAQ takes a fraction of a second, a large merge an hour."""
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
"""Seconds: a status query is answered in microseconds, a QueueDaq after a commit.

Each bucket is a series of every method and outcome, and a scrape's cost grows with
the series (not with the DAQs): few buckets, where the answers are."""


class StageMetrics:
    """Stage runs as ``DaqManager.pipeline.stage_ended`` tells them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "dpmd_stage_duration_seconds",
            "Duration of stage runs that ended, by stage and outcome (succeeded, or failed "
            "with an Error alert)",
            ("stage", "outcome"), registry=registry, buckets=STAGE_BUCKETS,
        )  # fmt: skip
        self.bytes = Counter(
            "dpmd_stage_bytes",
            "Bytes moved by stage runs that succeeded: sources collected, products merged, "
            "copies released", ("stage",), registry=registry,
        )  # fmt: skip
        self.retries = Counter(
            "dpmd_stage_retries",
            "Stage runs beyond a DAQ's first run of that stage (RetryMergeDaq, or a rerun "
            "after a restart), counted when they end", ("stage",), registry=registry,
        )  # fmt: skip
        for stage in STAGES:
            for outcome in STAGE_OUTCOMES:
                self.duration.labels(stage, outcome)
            self.bytes.labels(stage)
            self.retries.labels(stage)

    def stage_ended(self, event: StageEnded) -> None:
        outcome = STAGE_OUTCOMES[0] if event.succeeded else STAGE_OUTCOMES[1]
        self.duration.labels(event.stage, outcome).observe(max(0.0, event.seconds))
        if event.succeeded:
            self.bytes.labels(event.stage).inc(max(0, event.bytes))
        if event.attempts > 1:
            self.retries.labels(event.stage).inc()


class RpcMetrics:
    """Requests as the ``Dispatcher`` tells them (its ``observe``)."""

    def __init__(self, registry: CollectorRegistry, methods: Iterable[str]) -> None:
        self.duration = Histogram(
            "dpmd_rpc_request_duration_seconds",
            "Time from a request to its result, by method and outcome (ok, or the JSON-RPC "
            "error code); _count is the number of requests", ("method", "outcome"),
            registry=registry, buckets=RPC_BUCKETS,
        )  # fmt: skip
        self._children: dict[tuple[str | None, str], Any] = {}
        """The histogram's child of each (method, outcome): ``labels()`` costs more than
        the observation itself."""
        for method in methods:
            self._child(method, "ok")

    def observe(self, method: str | None, outcome: str, seconds: float) -> None:
        child = self._children.get((method, outcome)) or self._child(method, outcome)
        child.observe(seconds if seconds > 0.0 else 0.0)

    def _child(self, method: str | None, outcome: str) -> Any:
        child = self.duration.labels(method or OTHER_METHOD, outcome)
        self._children[(method, outcome)] = child
        return child


class StateCollector:
    """What the server is now, read at each scrape (a prometheus_client collector)."""

    def __init__(self, tally: DaqTally, clock: IReactorTime,
                 storage: Callable[[], tuple[StorageStatus, int] | None],
                 children: Callable[[], Iterable[Any]], version: str) -> None:  # fmt: skip
        self._tally = tally
        self._clock = clock
        self._storage = storage
        self._children = children
        self._version = version
        self._kinds: set[str] = set(CHILD_KINDS)

    def collect(self) -> Iterator[Metric]:
        tally = self._tally
        info = GaugeMetricFamily("dpmd_build_info", "The dpmd version serving", labels=["version"])
        info.add_metric([self._version], 1)
        yield info
        daqs = GaugeMetricFamily("dpmd_daqs", "Unfinished DAQs by substate", labels=["substate"])
        for substate, count in tally.by_substate.items():
            daqs.add_metric([substate], count)
        yield daqs
        finished = CounterMetricFamily("dpmd_daqs_finished",
                                       "DAQs finished since the server started, by final substate",
                                       labels=["substate"])  # fmt: skip
        for substate, count in tally.finished.items():
            finished.add_metric([substate], count)
        yield finished
        yield GaugeMetricFamily("dpmd_queue_depth", "DAQs queued (Scheduled) and not yet started",
                                value=tally.queue_depth)  # fmt: skip
        yield GaugeMetricFamily("dpmd_queue_oldest_age_seconds",
                                "Seconds since the oldest Scheduled DAQ was queued (0: none)",
                                value=tally.oldest_queued_age(self._clock.seconds()))  # fmt: skip
        alerts = GaugeMetricFamily("dpmd_alerts", "Active alerts of unfinished DAQs",
                                   labels=["category", "severity"])  # fmt: skip
        for (category, severity), count in sorted(tally.alerts.items()):
            alerts.add_metric([category, severity], count)
        yield alerts
        yield from self._storage_families()
        yield self._children_family()

    def _storage_families(self) -> Iterator[Metric]:
        sampled = self._storage()
        if sampled is None:
            return  # no sample yet: better no number than a false zero
        status, reserve = sampled
        for name, text, value in (
            ("capacity", "Size of the workspace's file system", status.capacity),
            ("free", "Free bytes on the workspace's file system", status.free),
            ("available", "Bytes available to dpmd on the workspace's file system (what the "
                          "reserve is compared with)", status.available),
            ("reserve", "Bytes kept free (storage.reserve): below it no stage starts", reserve),
        ):  # fmt: skip
            yield GaugeMetricFamily(f"dpmd_workspace_{name}_bytes", text, value=value)
        yield GaugeMetricFamily("dpmd_workspace_sample_timestamp_seconds",
                                "When the storage numbers were sampled (Unix time)",
                                value=status.timestamp)  # fmt: skip

    def _children_family(self) -> Metric:
        running = Tally(child.kind for child in self._children())
        self._kinds.update(running)
        family = GaugeMetricFamily("dpmd_children", "Child processes running, by kind",
                                   labels=["kind"])  # fmt: skip
        for kind in sorted(self._kinds):
            family.add_metric([kind], running.get(kind, 0))
        return family
