"""One DAQ: the transition table, its alerts, and commit-then-publish.

The substate moves only through ``TRANSITIONS``; any other request is an
``IllegalRequest`` (the client's ``DaqException``).  A failed stage does not
move the substate: it raises an Error alert, which is data beside the state
and makes ``error`` true until a retry clears it.

Every change builds a new record from the newest one, hands it to the
``commit`` callable (the store), and only when the store has it does it
become the DAQ's record and get published: clients never see a state that a
crash could take back.  When the store cannot commit, the DAQ shows a
``WorkspaceError`` alert that lives in memory only — an alert saying the
store failed cannot wait for the store — and goes on from its last committed
record once ``RetryMergeDaq`` finds the store working again.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from dpmd.daq.record import DaqRecord
from dpmd.encoding import PreEncoded
from dpmd.model import AlertSeverity, DaqAlert, DaqError, DaqSubState
from dpmd.spec import Specification

S = DaqSubState

WORKSPACE_ERROR = "WorkspaceError"


class Event(enum.Enum):
    START = "start"
    COLLECTED = "collected"
    MERGED = "merged"
    RELEASED = "released"
    ABORT = "abort"
    ABORTED = "aborted"


TRANSITIONS: dict[tuple[DaqSubState, Event], DaqSubState] = {
    (S.Scheduled, Event.START): S.Collecting,
    (S.Collecting, Event.COLLECTED): S.Merging,
    (S.Merging, Event.MERGED): S.Releasing,
    (S.Releasing, Event.RELEASED): S.Completed,
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
"""Make a DAQ's new record durable; then (and only then) it calls ``Daq.committed``."""


class Daq:
    """A DAQ in memory: its committed record and what is running for it now."""

    def __init__(self, record: DaqRecord, clock: IReactorTime, commit: Commit) -> None:
        self.record = record
        """The newest record that is in the store: what clients see."""
        self._newest = record
        self._clock = clock
        self._commit = commit
        self.specification: Specification | None = None
        """Parsed when the DAQ starts (a queued DAQ does not keep it in memory)."""
        self.progress: dict[str, Any] | None = None
        self.source_progress: dict[str, tuple[int, int]] = {}
        """Bytes done and total of each source being collected now (in memory only)."""
        self.children: list[Any] = []
        self.store_failure: DaqAlert | None = None
        self.holds_slot = False
        """It counts against ``limits.daq`` (set and cleared by the scheduler)."""
        self.folder_ready = False
        """Its folder in the workspace is made (when it first starts after a server start)."""
        self.aborting = False
        """An ``AbortDaq`` is under way: nothing new may start for it."""
        self._wire: dict[str, Any] | None = None
        self._encoded: PreEncoded | None = None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def substate(self) -> DaqSubState:
        return self.record.substate

    @property
    def alerts(self) -> tuple[DaqAlert, ...]:
        extra = (self.store_failure,) if self.store_failure is not None else ()
        return self.record.alerts + extra

    @property
    def blocked(self) -> bool:
        """An Error alert is active: the DAQ waits for ``RetryMergeDaq`` or ``AbortDaq``."""
        return any(alert.severity is AlertSeverity.Error for alert in self.alerts)

    def wire_status(self) -> dict[str, Any]:
        """The status as it goes on the wire, made once per change."""
        if self._wire is None:
            extra = (self.store_failure,) if self.store_failure is not None else ()
            self._wire = self.record.status(extra).to_json()
        return self._wire

    def encoded_status(self) -> PreEncoded:
        """The status as JSON text, encoded once per change: every status call and every
        subscriber gets the same bytes."""
        if self._encoded is None:
            self._encoded = PreEncoded.of(self.wire_status())
        return self._encoded

    # -- changes ------------------------------------------------------------------

    def fire(self, event: Event, message: str, **fields: Any) -> Deferred[None]:
        """Take the transition ``event`` names from the current substate and commit it."""
        current = self._newest.substate
        target = TRANSITIONS.get((current, event))
        if target is None:
            raise IllegalRequest(
                f"DAQ '{self.id}' cannot {event.value} while {current.value}", self.id
            )
        now = self._clock.seconds()
        if target is S.Collecting:
            fields["started_at"] = now
        if target.is_final:
            fields["finished_at"] = now
        entry = {"substate": target.value, "timestamp": now, "event": event.value,
                 "message": message}  # fmt: skip
        self.progress = None
        self.source_progress = {}
        return self.change(message, substate=target, history=(*self._newest.history, entry),
                           **fields)  # fmt: skip

    def raise_alert(self, category: str, key: str, severity: AlertSeverity,
                    description: str, terminal: bool = False, attempts: int = 0,
                    **fields: Any) -> Deferred[None]:  # fmt: skip
        """Set (or update) the alert of one condition; the message repeats its text."""
        alert = DaqAlert(category, key, severity, description, self._clock.seconds(),
                         terminal, attempts)  # fmt: skip
        others = tuple(a for a in self._newest.alerts if (a.category, a.key) != (category, key))
        return self.change(description, alerts=(*others, alert), **fields)

    def clear_alerts(self, categories: tuple[str, ...], message: str,
                     **fields: Any) -> Deferred[None]:  # fmt: skip
        """Remove the alerts of ``categories``."""
        alerts = tuple(a for a in self._newest.alerts if a.category not in categories)
        return self.change(message, alerts=alerts, **fields)

    def clear_errors(self, message: str, **fields: Any) -> Deferred[None]:
        """Remove every Error alert (an abort ends what they were about)."""
        alerts = tuple(a for a in self._newest.alerts if a.severity is not AlertSeverity.Error)
        return self.change(message, alerts=alerts, **fields)

    def change(self, message: str, **fields: Any) -> Deferred[None]:
        """Commit a new record: the newest one with ``fields`` and ``message``."""
        record = replace(self._newest, message=message, timestamp=self._clock.seconds(),
                         **fields)  # fmt: skip
        self._newest = record
        return self._commit(self, record)

    @property
    def newest(self) -> DaqRecord:
        """The newest record built, committed or not (a stage reads its own changes here)."""
        return self._newest

    # -- what the store says -----------------------------------------------------------

    def committed(self, record: DaqRecord) -> None:
        """``record`` is on disk: it is now what clients see."""
        self.record = record
        self._forget_wire()

    def _forget_wire(self) -> None:
        self._wire = None
        self._encoded = None

    def not_committed(self, reason: str) -> None:
        """The store refused a change: forget what was built on it, say why."""
        self._newest = self.record
        self.store_failure = DaqAlert(
            WORKSPACE_ERROR,
            "store",
            AlertSeverity.Error,
            f"the workspace store could not record a change ({reason}); the DAQ stays at "
            "its last recorded state — free the space or fix the disk, then RetryMergeDaq",
            self._clock.seconds(),
        )
        self._forget_wire()

    def store_recovered(self) -> None:
        self.store_failure = None
        self._forget_wire()
