"""The metrics of one dpmd as a service: its registry, what feeds it, its listener.

Each server has a ``CollectorRegistry`` of its own (not prometheus_client's
global one), so several servers in one process do not mix their numbers.
The service is started after the DAQ manager: by then the store is recovered,
so the tally begins from the unfinished DAQs (one pass over them, at start
only) and then follows ``/daq/status``; the stage observers are added to the
manager's pipeline, which exists from then on.  Its listener binds with the
server's others, before anything starts.

The storage numbers are the latest sample the ``StorageMonitor`` gave: each
scrape asks for a fresh one (taken in a thread when the last is older than
``storage.max_age``) and shows the latest it has without waiting, so a
file system that hangs cannot hang a scrape.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTime
from twisted.python.failure import Failure

import dpmd
from dpmd.daq.manager import DaqManager
from dpmd.daq.persist.committer import STATUS_TOPIC
from dpmd.logs import get_logger
from dpmd.metrics.daqs import DaqTally
from dpmd.metrics.families import RpcMetrics, StageMetrics, StateCollector
from dpmd.metrics.web import MetricsSite
from dpmd.model import StorageStatus
from dpmd.storage import StorageMonitor
from dpmd.topics import TopicHub

log = get_logger(__name__)


class MetricsService(MultiService):
    """``metrics.listen``: the ``/metrics`` page and the numbers behind it."""

    def __init__(self, description: str, reactor: IReactorTime, hub: TopicHub,
                 storage: StorageMonitor, manager: DaqManager,
                 methods: list[str]) -> None:  # fmt: skip
        """Raises ``ValueError`` (or ``KeyError``, ``TypeError``, as Twisted's parser does)
        for an endpoint string that is not valid."""
        super().__init__()
        self.description = description
        self._clock = reactor
        self._hub = hub
        self._storage = storage
        self._manager = manager
        self.registry = CollectorRegistry(auto_describe=False)
        self.tally = DaqTally()
        self.stages = StageMetrics(self.registry)
        self.rpc = RpcMetrics(self.registry, methods)
        self.registry.register(StateCollector(
            self.tally, reactor, self._storage_sample, lambda: manager.means.runner.running,
            dpmd.__version__,
        ))  # fmt: skip
        ProcessCollector(registry=self.registry)
        self._sample: StorageStatus | None = None
        self._sampling = False
        site = MetricsSite(self.registry, self.refresh_storage)
        self._listener = strports.service(description, site, reactor=IReactorCore(reactor))
        self._listener.setServiceParent(self)
        self.port: IListeningPort | None = None
        """The bound listener (once bound)."""

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if isinstance(self._listener, StreamServerEndpointService):
            self._listener._waitingForPort.addCallback(self._bound)

    def _bound(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        host: Any = port.getHost()
        where = f"{host.host}:{host.port}" if hasattr(host, "port") else str(host)
        log.info("metrics served at http://{where}/metrics", where=where)
        return port

    def startService(self) -> None:
        manager = self._manager
        self.tally.seed((daq.wire_status(), daq.record.queued_at) for daq in manager.registry)
        self._hub.subscribe(STATUS_TOPIC, self.tally)
        manager.pipeline.stage_ended.add(self.stages.stage_ended)
        self.refresh_storage()
        super().startService()

    def stopService(self) -> Any:
        self._hub.unsubscribe(STATUS_TOPIC, self.tally)
        return super().stopService()

    # -- storage ------------------------------------------------------------------------

    def refresh_storage(self) -> None:
        """Ask for a sample at most ``storage.max_age`` old; never wait for it."""
        if self._sampling:
            return
        status = self._storage.status()
        if isinstance(status, Deferred):
            self._sampling = True
            status.addCallbacks(self._sampled, self._sample_failed)
        else:
            self._sample = status

    def _sampled(self, status: StorageStatus) -> None:
        self._sampling = False
        self._sample = status

    def _sample_failed(self, failure: Failure) -> None:
        self._sampling = False
        log.failure("metrics: storage sample failed", failure)

    def _storage_sample(self) -> tuple[StorageStatus, int] | None:
        sample = self._sample
        if sample is None:
            return None
        return sample, self._storage.reserve_bytes(sample)
