"""One DAQ: the transition table, its alerts, its changes.

The substate moves only through ``TRANSITIONS``; any other request is an
``IllegalRequest`` (the client's ``DaqException``).  A failed stage does not
move the substate: it raises an Error alert, which is data beside the state
and makes ``error`` true until a retry clears it.

Every change builds a new record from the newest one and hands it to its
``commit`` callable (``persist.committer.Committer.commit``); only when the
store has it does it become the DAQ's record and get published: clients
never see a state that a crash could take back.  When the store cannot commit, the DAQ shows a
``WorkspaceError`` alert that lives in memory only — an alert saying the
store failed cannot wait for the store — and goes on from its last committed
record once ``RetryMergeDaq`` finds the store working again.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from dpmd.daq.persist.store import StoreError
from dpmd.encoding import PreEncoded, encode
from dpmd.logs import get_logger
from dpmd.model import AlertSeverity, DaqAlert, DaqError, DaqSubState
from dpmd.record import DaqRecord
from dpmd.spec import Specification

log = get_logger(__name__)

S = DaqSubState

WORKSPACE_ERROR = "WorkspaceError"


class Event(enum.Enum):
    """What moves a DAQ from one substate to another (the keys of ``TRANSITIONS``)."""

    START = "start"
    COLLECTED = "collected"
    MERGED = "merged"
    RELEASED = "released"
    RECOLLECT = "recollect"
    ABORT = "abort"
    ABORTED = "aborted"


TRANSITIONS: dict[tuple[DaqSubState, Event], DaqSubState] = {
    (S.Scheduled, Event.START): S.Collecting,
    (S.Collecting, Event.COLLECTED): S.Merging,
    (S.Merging, Event.MERGED): S.Releasing,
    (S.Releasing, Event.RELEASED): S.Completed,
    (S.Merging, Event.RECOLLECT): S.Collecting,
    (S.Scheduled, Event.ABORT): S.Aborted,
    (S.Collecting, Event.ABORT): S.Aborting,
    (S.Merging, Event.ABORT): S.Aborting,
    (S.Releasing, Event.ABORT): S.Aborting,
    (S.Aborting, Event.ABORTED): S.Aborted,
}

STAGE_SUBSTATES = (S.Collecting, S.Merging, S.Releasing)
"""The substates in which a stage runs; a DAQ in one of them holds a ``limits.daq`` slot."""


class IllegalRequest(DaqError):
    """A command that the DAQ's current state does not allow."""


Commit = Callable[["Daq", DaqRecord], "Deferred[None]"]
"""Make a DAQ's new record durable; then (and only then) it calls ``Daq.committed``
(``Committer.commit``)."""


class Daq:
    """A DAQ in memory: its committed record and what is running for it now.

    Owns its record and its in-memory state (progress, children, the store's failure);
    may call only its ``commit`` callable, which the committer gives it.

    It holds few objects of its own, and none that refer back to it: a DAQ that
    is finished is freed as soon as the rooms let it go, without a garbage
    collection, and the many that wait in the queue cost a collection little.
    While it is ``Scheduled`` it may keep its record as the text the store has
    (``keep_encoded``): one string, which the collector does not traverse.
    """

    __slots__ = ("__weakref__", "_clock", "_commit", "_newest", "_record", "_status", "_text",
                 "aborting", "children", "folder_ready", "holds_slot", "id", "progress",
                 "source_progress", "specification", "store_failure", "substate")  # fmt: skip

    def __init__(self, record: DaqRecord, clock: IReactorTime, commit: Commit) -> None:
        self.id = record.id
        """Its id (a plain attribute: the registry and the scheduler read it at every step)."""
        self.substate = record.substate
        """The committed record's substate (a plain attribute, for the same reason)."""
        self._record: DaqRecord | None = record
        self._text: str | None = None
        self._newest: DaqRecord | None = None
        """The newest record built and not yet committed; None when it is the committed one."""
        self._clock = clock
        self._commit = commit
        self.specification: Specification | None = None
        """Parsed when the DAQ starts (a queued DAQ does not keep it in memory)."""
        self.progress: dict[str, Any] | None = None
        self.source_progress: dict[str, tuple[int, int]] = {}
        """Bytes done and total of each source being collected now (in memory only)."""
        self.children: tuple[Any, ...] = ()
        """Its running child processes (``StageContext.spawn`` adds, their end removes)."""
        self.store_failure: DaqAlert | None = None
        self.holds_slot = False
        """It counts against ``limits.daq`` (set and cleared by the scheduler)."""
        self.folder_ready = False
        """Its folder in the workspace is made (when it first starts after a server start)."""
        self.aborting = False
        """An ``AbortDaq`` is under way: nothing new may start for it."""
        self._status: bytes | None = None

    def keep_encoded(self, text: str) -> None:
        """Keep the committed record as ``text`` (its stored form) while it waits in the
        queue; it is decoded when asked for, and kept decoded from its first change.

        Its status is encoded first (if it is not yet): a ``GetActiveDaqs`` of a long
        queue then only joins bytes, where it would otherwise decode and encode every
        queued DAQ in one turn of the reactor."""
        assert self.substate is S.Scheduled and self._newest is None
        self.status_json()
        self._text = text
        self._record = None

    @property
    def record(self) -> DaqRecord:
        """The newest record that is in the store: what clients see."""
        if self._record is not None:
            return self._record
        assert self._text is not None
        return DaqRecord.decode(self._text)

    @property
    def started_at(self) -> float | None:
        """When it left ``Scheduled`` (None before; a queued DAQ is not decoded for it)."""
        return None if self._record is None else self._record.started_at

    @property
    def alerts(self) -> tuple[DaqAlert, ...]:
        extra = (self.store_failure,) if self.store_failure is not None else ()
        return self.record.alerts + extra

    @property
    def blocked(self) -> bool:
        """An Error alert is active: the DAQ waits for ``RetryMergeDaq`` or ``AbortDaq``."""
        return any(alert.severity is AlertSeverity.Error for alert in self.alerts)

    def wire_status(self) -> dict[str, Any]:
        """The status as it goes on the wire."""
        extra = (self.store_failure,) if self.store_failure is not None else ()
        return self.record.status(extra).to_json()

    def status_json(self) -> bytes:
        """The status as JSON text, encoded once per change: every status call and every
        subscriber gets the same bytes."""
        if self._status is None:
            self._status = encode(self.wire_status())
        return self._status

    def encoded_status(self) -> PreEncoded:
        return PreEncoded(self.status_json())

    # -- changes ------------------------------------------------------------------

    def fire(self, event: Event, message: str, history_note: dict[str, Any] | None = None,
             **fields: Any) -> Deferred[None]:  # fmt: skip
        """Take the transition ``event`` names from the current substate and commit it.

        ``history_note``: what the transition's entry in the history keeps beside its
        message (e.g. the checksums of re-collected sources, before and after)."""
        newest = self.newest
        current = newest.substate
        target = TRANSITIONS.get((current, event))
        if target is None:
            raise IllegalRequest(
                f"DAQ '{self.id}' cannot {event.value} while {current.value}", self.id
            )
        now = self._clock.seconds()
        if event is Event.START:
            fields["started_at"] = now
        if target.is_final:
            fields["finished_at"] = now
        entry = {"substate": target.value, "timestamp": now, "event": event.value,
                 "message": message, **(history_note or {})}  # fmt: skip
        self.progress = None
        self.source_progress = {}
        return self.change(message, substate=target, history=(*newest.history, entry),
                           **fields)  # fmt: skip

    def raise_alert(self, category: str, key: str, severity: AlertSeverity,
                    description: str, terminal: bool = False, attempts: int = 0,
                    **fields: Any) -> Deferred[None]:  # fmt: skip
        """Set (or update) the alert of one condition; the message repeats its text."""
        alert = DaqAlert(category, key, severity, description, self._clock.seconds(),
                         terminal, attempts)  # fmt: skip
        others = tuple(a for a in self.newest.alerts if (a.category, a.key) != (category, key))
        return self.change(description, alerts=(*others, alert), **fields)

    def clear_alerts(self, categories: tuple[str, ...], message: str,
                     **fields: Any) -> Deferred[None]:  # fmt: skip
        """Remove the alerts of ``categories``."""
        alerts = tuple(a for a in self.newest.alerts if a.category not in categories)
        return self.change(message, alerts=alerts, **fields)

    def clear_errors(self, message: str, **fields: Any) -> Deferred[None]:
        """Remove every Error alert (an abort ends what they were about)."""
        alerts = tuple(a for a in self.newest.alerts if a.severity is not AlertSeverity.Error)
        return self.change(message, alerts=alerts, **fields)

    def change(self, message: str, **fields: Any) -> Deferred[None]:
        """Commit a new record: the newest one with ``fields`` and ``message``."""
        record = replace(self.newest, message=message, timestamp=self._clock.seconds(),
                         **fields)  # fmt: skip
        self._newest = record
        return self._commit(self, record)

    @property
    def newest(self) -> DaqRecord:
        """The newest record built, committed or not (a stage reads its own changes here)."""
        return self._newest if self._newest is not None else self.record

    # -- what the store says -----------------------------------------------------------

    def committed(self, record: DaqRecord) -> None:
        """``record`` is on disk: it is now what clients see."""
        self._record = record
        self._text = None
        if self._newest is record:
            self._newest = None
        self.substate = record.substate
        self._status = None

    def not_committed(self, reason: str) -> None:
        """The store refused a change: forget what was built on it, say why."""
        self._newest = None
        self.store_failure = DaqAlert(
            WORKSPACE_ERROR,
            "store",
            AlertSeverity.Error,
            f"the workspace store could not record a change ({reason}); the DAQ stays at "
            "its last recorded state — free the space or fix the disk, then RetryMergeDaq",
            self._clock.seconds(),
        )
        self._status = None

    def store_recovered(self) -> None:
        self.store_failure = None
        self._status = None


def settle(deferred: Deferred[Any], what: str, **fields: Any) -> None:
    """End a chain nobody waits for: a store failure is already the DAQ's alert; the
    rest is logged."""

    def ended(failure: Failure) -> None:
        if failure.check(StoreError, CancelledError):
            return
        log.failure("{what} failed", failure, what=what, **fields)

    deferred.addErrback(ended)
