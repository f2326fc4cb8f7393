"""Metrics of a dpmd for Prometheus (``metrics.listen``; off by default).

``daqs`` keeps the DAQs by substate, their alerts and the queue from
``/daq/status``; ``families`` declares every metric; ``web`` serves them;
``service`` puts them together for one server.  README.md ("Metrics")
lists the metrics; etc/grafana-dpmd.json is a dashboard for them.
"""

from dpmd.metrics.service import MetricsService

__all__ = ["MetricsService"]
