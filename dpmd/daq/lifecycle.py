"""One DAQ: its record, the transition table, its alerts.

The substate moves only through ``TRANSITIONS``; any other request is an
``IllegalRequest`` (the client's ``DaqException``).  A failed stage does not
move the substate: it raises an Error alert, which is data beside the state
and makes ``error`` true until a retry clears it.

Every change is committed through the ``commit`` callable the manager gives:
it makes the record durable and only then publishes the status, so clients
never see a state that a crash could take back.  Side effects (starting a
stage) are the manager's, on a later reactor turn.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred

from dpmd.model import AlertSeverity, DaqAlert, DaqError, DaqStatus, DaqSubState
from dpmd.spec import Specification
from dpmd.workspace import RECORD_FORMAT

S = DaqSubState


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

STAGES = (S.Collecting, S.Merging, S.Releasing)
"""The substates in which a stage runs; a DAQ in one of them holds a ``limits.daq`` slot."""

STAGE_ERROR = {
    S.Collecting: "SourceFileCollectionError",
    S.Merging: "MergeError",
    S.Releasing: "SourceFileReleasingError",
}
"""The Error alert each stage raises when it fails (and that ``RetryMergeDaq`` clears)."""

STAGE_ALERTS = {
    S.Collecting: ("SourceFileCollectionError", "SuspiciousSourceFileTimestamp"),
    S.Merging: ("MergeError", "UnmergedData", "PrimaryHduResized"),
    S.Releasing: ("SourceFileReleasingError",),
}
"""Alerts a stage owns: cleared when it runs again, as it will raise them anew if still true."""


class IllegalRequest(DaqError):
    """A command that the DAQ's current state does not allow."""


@dataclass
class DaqRecord:
    """Everything about a DAQ that survives a restart (``status.json``)."""

    id: str
    file_id: str
    seq: int
    substate: DaqSubState
    queued_at: float
    timestamp: float
    alerts: list[DaqAlert] = field(default_factory=list)
    message: str = ""
    result: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    product: str = ""
    released: dict[str, dict[str, str]] = field(default_factory=dict)
    """Deliveries done, by receiver key: ``{"path": …, "how": "link"|"symlink"|"copy"}``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "id": self.id,
            "file_id": self.file_id,
            "seq": self.seq,
            "substate": self.substate.value,
            "queued_at": self.queued_at,
            "timestamp": self.timestamp,
            "alerts": [alert.to_json() for alert in self.alerts],
            "message": self.message,
            "result": self.result,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "history": self.history,
            "sources": self.sources,
            "product": self.product,
            "released": self.released,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DaqRecord:
        return cls(
            id=obj["id"],
            file_id=obj["file_id"],
            seq=int(obj["seq"]),
            substate=DaqSubState(obj["substate"]),
            queued_at=float(obj["queued_at"]),
            timestamp=float(obj["timestamp"]),
            alerts=[DaqAlert.from_json(alert) for alert in obj["alerts"]],
            message=obj["message"],
            result=obj["result"],
            started_at=obj["started_at"],
            finished_at=obj["finished_at"],
            history=list(obj["history"]),
            sources=list(obj["sources"]),
            product=obj["product"],
            released=dict(obj["released"]),
        )

    def status(self) -> DaqStatus:
        return DaqStatus(
            id=self.id,
            file_id=self.file_id,
            substate=self.substate,
            alerts=tuple(self.alerts),
            message=self.message,
            result=self.result,
            timestamp=self.timestamp,
        )


Commit = Callable[["Daq", DaqStatus], "Deferred[None]"]


class Daq:
    """A DAQ in memory: its record, its specification and what is running for it."""

    def __init__(
        self, record: DaqRecord, specification: Specification, clock: Any, commit: Commit
    ) -> None:
        self.record = record
        self.specification = specification
        self._clock = clock
        self._commit = commit
        self.progress: dict[str, Any] | None = None
        self.children: list[Any] = []

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def substate(self) -> DaqSubState:
        return self.record.substate

    @property
    def status(self) -> DaqStatus:
        return self.record.status()

    @property
    def blocked(self) -> bool:
        """A stage failed and waits for ``RetryMergeDaq`` or ``AbortDaq``."""
        return self.status.error

    def fire(self, event: Event, message: str) -> Deferred[None]:
        """Take the transition ``event`` names from the current substate and commit it."""
        current = self.record.substate
        target = TRANSITIONS.get((current, event))
        if target is None:
            raise IllegalRequest(
                f"DAQ '{self.id}' cannot {event.value} while {current.value}", self.id
            )
        now = self._clock.seconds()
        self.record.substate = target
        if target is S.Collecting:
            self.record.started_at = now
        if target.is_final:
            self.record.finished_at = now
        self.record.history.append(
            {"substate": target.value, "timestamp": now, "event": event.value, "message": message}
        )
        self.progress = None
        return self._change(message)

    def raise_alert(
        self, category: str, key: str, severity: AlertSeverity, description: str
    ) -> Deferred[None]:
        """Set (or update) the alert of one condition; the message repeats its text."""
        alert = DaqAlert(category, key, severity, description, self._clock.seconds())
        others = [a for a in self.record.alerts if (a.category, a.key) != (category, key)]
        self.record.alerts = [*others, alert]
        return self._change(description)

    def clear_alerts(self, categories: tuple[str, ...], message: str) -> Deferred[None]:
        self.record.alerts = [a for a in self.record.alerts if a.category not in categories]
        return self._change(message)

    def note(self, message: str, **changes: Any) -> Deferred[None]:
        """Record an event in words, with any changes to the record's data fields."""
        for name, value in changes.items():
            setattr(self.record, name, value)
        return self._change(message)

    def _change(self, message: str) -> Deferred[None]:
        self.record.message = message
        self.record.timestamp = self._clock.seconds()
        return self._commit(self, self.record.status())
