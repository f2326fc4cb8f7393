"""The ``/metrics`` page over HTTP, rendered on the reactor thread.

prometheus_client's own ``MetricsResource`` runs the exposition in the
reactor's thread pool.  Here every number is already in memory (counters,
and gauges kept from events; storage from the last sample, never a
``statvfs``), so rendering takes well under a millisecond and running it
on the reactor thread means no lock between the scrape and the DAQs'
events.  The text format follows the scraper's ``Accept`` header (the
Prometheus text format, or OpenMetrics), with the library's own encoders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

PATH = b"metrics"


class MetricsPage(Resource):
    """``GET /metrics``: the registry's metrics as text."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, before_scrape: Callable[[], None]) -> None:
        super().__init__()
        self._registry = registry
        self._before_scrape = before_scrape

    def render_GET(self, request: Request) -> bytes:
        self._before_scrape()
        accept = request.getHeader("accept") or ""
        encoder, content_type = choose_encoder(accept)
        request.setHeader("content-type", content_type)
        return encoder(self._registry)


class MetricsSite(Site):
    """The site of ``metrics.listen``: ``/metrics`` only, and no access log (a scrape
    every few seconds is not news)."""

    noisy = False

    def __init__(self, registry: CollectorRegistry, before_scrape: Callable[[], None]) -> None:
        root = Resource()
        root.putChild(PATH, MetricsPage(registry, before_scrape))
        super().__init__(root)

    def log(self, request: Any) -> None:
        pass
