"""Logging: every dpmd module logs through ``get_logger(__name__)``.

twistd owns the log destinations (``--logfile``, ``--syslog``, ``--logger``);
dpmd owns the level.  dpmd's loggers publish through one filtering observer
whose level ``--log-level`` sets, so the level applies to dpmd's events
without touching how twistd writes them.

``json_file_observer`` is a factory for twistd's ``--logger`` option: it
writes one JSON object per event (Twisted's ``jsonFileLogObserver`` format)
to ``$DPMD_JSON_LOG`` or ``dpmd.log.json`` in twistd's run directory.
"""

from __future__ import annotations

import os

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
    jsonFileLogObserver,
)

_level = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_dpmd_observer = FilteringLogObserver(globalLogPublisher, [_level])


def get_logger(namespace: str) -> Logger:
    """A logger for one module, subject to dpmd's log level."""
    return Logger(namespace=namespace, observer=_dpmd_observer)


def set_log_level(name: str) -> None:
    """Set the lowest level of dpmd events that reach the log (``debug`` … ``critical``)."""
    _level.setLogLevelForNamespace("", LogLevel.levelWithName(name))


def json_file_observer() -> ILogObserver:
    """twistd ``--logger`` factory: JSON lines to ``$DPMD_JSON_LOG`` (default ``dpmd.log.json``)."""
    path = os.environ.get("DPMD_JSON_LOG", "dpmd.log.json")
    return jsonFileLogObserver(open(path, "a", encoding="utf-8"))
