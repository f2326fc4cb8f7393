"""Logging: every dpmd module logs through ``get_logger(__name__)``.

twistd owns the log destinations (``--logfile``, ``--syslog``, ``--logger``);
dpmd owns the level.  dpmd's loggers publish through one filtering observer
whose level ``--log-level`` sets, so the level applies to dpmd's events
without touching how twistd writes them.

Under ``twistd dpmd`` every event goes to the log's observers on a thread of
their own (``LogWriter``): formatting a line and writing it cost the reactor
more than most requests, and now cost it a queue's ``put``.  The lines keep
their order; the writer drains its queue when the server stops, so no line
is lost on a clean stop.  Tests and programs that embed dpmd get every event
at once, in the calling thread, as Twisted's loggers do.

``json_file_observer`` is a factory for twistd's ``--logger`` option.  It
writes one plain JSON object per event and line, for log shippers and
``jq``: ``time`` (ISO 8601, UTC), ``level`` (one of ``LEVELS``), ``logger``
(the module), ``message`` (rendered), and the event's own fields (``daq_id``
and the like) where they can be JSON-encoded.  It is not Twisted's
``jsonFileLogObserver`` format, whose RFC 7464 record separators, nested
levels and unrendered format strings no ordinary JSON tool reads.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TextIO, cast

from twisted.application.service import Service
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
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
    """SIGUSR1: reopen twistd's log file and every JSON log under their names (on the
    log writer's thread, between two lines, when one runs: it alone writes them)."""

    def reopen() -> None:
        for log_file in log_files:
            log_file.reopen()
        reopen_json_logs()

    if _writers:
        _writers[-1].between_lines(reopen)
    else:
        reopen()
    get_logger(__name__).info("log files reopened")


def reopen_json_logs() -> None:
    """Reopen the files of every ``json_file_observer`` (on SIGUSR1, after logrotate)."""
    for observer in _json_logs:
        observer.reopen()


class LogWriter(Service):
    """While it runs, every event of ``publisher`` reaches its observers on a thread of
    its own, in order; stopping it writes every event still queued first.

    On start it takes the publisher's observers (twistd's log file, or the JSON
    log) and leaves it one: the queue's ``put``.  The thread alone calls them,
    through a publisher of its own (which reports an observer's error as
    Twisted's does), so a log file is never written, or rotated, by two threads
    at once.  ``LogPublisher`` does not list its observers: they are read from
    its ``_observers``, as they have been since ``twisted.logger`` exists.
    ``twistd dpmd`` starts it before the other services and stops it after them,
    so that their last lines are written too.
    """

    def __init__(self, publisher: LogPublisher = globalLogPublisher) -> None:
        self._publisher = publisher
        self._events: queue.SimpleQueue[dict[str, Any] | Callable[[], None] | None] = (
            queue.SimpleQueue())
        self._enqueue = cast(ILogObserver, self._events.put)
        self._observers: list[ILogObserver] = []
        self._thread: threading.Thread | None = None

    def startService(self) -> None:
        super().startService()
        self._observers = list(self._publisher._observers)
        writing = LogPublisher(*self._observers)
        self._thread = threading.Thread(target=self._write, args=(writing,),
                                        name="dpmd-log-writer", daemon=True)  # fmt: skip
        self._thread.start()
        for observer in self._observers:
            self._publisher.removeObserver(observer)
        self._publisher.addObserver(self._enqueue)
        _writers.append(self)
        atexit.register(self._drain)  # a start-up failure exits without stopping services

    def between_lines(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the writer's thread after the lines logged so far, before the
        next (reopening the log files)."""
        self._events.put(work)

    def stopService(self) -> None:
        super().stopService()
        self._drain()
        atexit.unregister(self._drain)

    def _drain(self) -> None:
        """Write what is queued and end the thread; the observers get events at once again.

        The thread writes everything queued before the stop, and only then are the
        observers given back to the publisher: no line is written beside the thread's.
        What another thread logged meanwhile (after the stop in the queue) follows."""
        if self._thread is None:
            return
        _writers.remove(self)
        self._events.put(None)
        self._thread.join()
        self._thread = None
        self._publisher.removeObserver(self._enqueue)
        for observer in self._observers:
            self._publisher.addObserver(observer)
        while True:
            try:
                late = self._events.get_nowait()
            except queue.Empty:
                break
            if late is not None:
                _handle(late, self._publisher)

    def _write(self, writing: LogPublisher) -> None:
        while (item := self._events.get()) is not None:
            _handle(item, writing)


def _handle(item: dict[str, Any] | Callable[[], None], publish: LogPublisher) -> None:
    """Publish an event, or run the work queued between two lines (reporting its error)."""
    if isinstance(item, dict):
        publish(item)
        return
    try:
        item()
    except Exception:
        Logger(namespace=__name__, observer=publish).failure("log writer: {work!r}", work=item)


_writers: list[LogWriter] = []
"""The log writer that runs (``twistd dpmd`` starts one)."""
