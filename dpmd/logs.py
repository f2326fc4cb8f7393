"""Logging: every dpmd module logs through ``get_logger(__name__)``.

twistd owns the log destinations (``--logfile``, ``--syslog``, ``--logger``);
dpmd owns the level.  dpmd's loggers publish through one filtering observer
whose level ``--log-level`` sets, so the level applies to dpmd's events
without touching how twistd writes them.

``json_file_observer`` is a factory for twistd's ``--logger`` option.  It
writes one plain JSON object per event and line, for log shippers and
``jq``: ``time`` (ISO 8601, UTC), ``level`` (one of ``LEVELS``), ``logger``
(the module), ``message`` (rendered), and the event's own fields (``daq_id``
and the like) where they can be JSON-encoded.  It is not Twisted's
``jsonFileLogObserver`` format, whose RFC 7464 record separators, nested
levels and unrendered format strings no ordinary JSON tool reads.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, TextIO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
)
from zope.interface import implementer

LEVELS = ("debug", "info", "warn", "error", "critical")
"""dpmd's level names, lowest first: the configuration's ``log_level`` and the JSON log's."""

_level = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_dpmd_observer = FilteringLogObserver(globalLogPublisher, [_level])


def get_logger(namespace: str) -> Logger:
    """A logger for one module, subject to dpmd's log level."""
    return Logger(namespace=namespace, observer=_dpmd_observer)


def set_log_level(name: str) -> None:
    """Set the lowest level of dpmd events that reach the log (one of ``LEVELS``)."""
    _level.setLogLevelForNamespace("", LogLevel.levelWithName(name))


def level_name(level: LogLevel | None) -> str:
    """The name of a Twisted level in dpmd's set; an event without one is ``info``."""
    name = getattr(level, "name", None)
    return name if name in LEVELS else "info"


def iso_time(timestamp: float) -> str:
    """``2026-01-01T12:00:00.250000Z``: ISO 8601 in UTC, to the microsecond."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_LEGACY_KEYS = frozenset({"format", "message", "isError", "system", "why", "failure"})
"""Keys of ``twisted.python.log`` events that the record already renders."""


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def event_as_record(event: dict[str, Any]) -> dict[str, Any]:
    """One log event as the flat, JSON-ready object the JSON log writes.

    Twisted's own keys (``log_*``) become ``time``, ``level``, ``logger``,
    ``message``, ``system`` and ``traceback``; the event's other fields keep
    their names, except those JSON cannot hold (a protocol object, say),
    which still appear in the rendered message.
    """
    record: dict[str, Any] = {
        "time": iso_time(event.get("log_time") or 0.0),
        "level": level_name(event.get("log_level")),
        "logger": event.get("log_namespace") or "-",
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    system = event.get("log_system", event.get("system"))
    if isinstance(system, str) and system != "-":
        record["system"] = system
    for key, value in event.items():
        if key.startswith("log_") or key in record or key in _LEGACY_KEYS:
            continue
        if _encodable(value):
            record[key] = value
    return record


@implementer(ILogObserver)
class JsonLineObserver:
    """Writes ``event_as_record`` of every event as one line of ``stream``.

    Each line is flushed at once: a log is read while the server runs.
    ``reopen`` starts a new file under the same path (after logrotate has
    moved the old one) for observers made with a path.
    """

    def __init__(self, stream: TextIO, path: str | None = None) -> None:
        self._stream = stream
        self._path = path

    def __call__(self, event: dict[str, Any]) -> None:
        self._stream.write(json.dumps(event_as_record(event), allow_nan=False) + "\n")
        self._stream.flush()

    def reopen(self) -> None:
        if self._path is None:
            return
        old, self._stream = self._stream, _append(self._path)
        old.close()


def _append(path: str) -> TextIO:
    """A log file opened for appending; it stays open as long as the log."""
    return open(path, "a", encoding="utf-8")


_json_logs: list[JsonLineObserver] = []


def json_file_observer() -> JsonLineObserver:
    """twistd ``--logger`` factory: JSON lines to ``$DPMD_JSON_LOG`` (default ``dpmd.log.json``)."""
    path = os.environ.get("DPMD_JSON_LOG", "dpmd.log.json")
    observer = JsonLineObserver(_append(path), path)
    _json_logs.append(observer)
    return observer


def twistd_log_files(handler: Any) -> list[Any]:
    """The log files twistd rotates on SIGUSR1 (the ones its handler closes over).

    twistd's own handler *rotates* its log file, which does nothing once
    logrotate has moved the file away; dpmd's reopens it instead.
    """
    from twisted.python.logfile import LogFile

    cells = getattr(handler, "__closure__", None) or ()
    return [cell.cell_contents for cell in cells if isinstance(cell.cell_contents, LogFile)]


def reopen_logs(log_files: list[Any]) -> None:
    """SIGUSR1: reopen twistd's log file and every JSON log under their names."""
    for log_file in log_files:
        log_file.reopen()
    reopen_json_logs()
    get_logger(__name__).info("log files reopened")


def reopen_json_logs() -> None:
    """Reopen the files of every ``json_file_observer`` (on SIGUSR1, after logrotate)."""
    for observer in _json_logs:
        observer.reopen()
