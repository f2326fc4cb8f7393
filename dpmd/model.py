"""The data structures of the wire contract (protocol.md section 3).

They are plain frozen dataclasses with an explicit ``to_json`` so that the
field names on the wire are spelled in exactly one place, and so that the
client library can rebuild the same objects with ``from_json``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class WireEnum(enum.Enum):
    """An enumeration whose members print as their wire value (``Collecting``).

    ``print(status.substate)`` then shows what the protocol and ``dpmctl``
    show, not Python's ``DaqSubState.Collecting``.
    """

    def __str__(self) -> str:
        return str(self.value)


class DaqState(WireEnum):
    """The top-level state of a DAQ as the ICD names it."""

    StateAcquiring = "StateAcquiring"
    StateMerging = "StateMerging"
    StateCompleted = "StateCompleted"
    StateUndefined = "StateUndefined"


class DaqSubState(WireEnum):
    """The detailed state of a DAQ; dpmd uses the ones from ``Scheduled`` on."""

    NotStarted = "NotStarted"
    Starting = "Starting"
    Acquiring = "Acquiring"
    Stopping = "Stopping"
    Stopped = "Stopped"
    Aborting = "Aborting"
    Aborted = "Aborted"
    NotScheduled = "NotScheduled"
    Scheduled = "Scheduled"
    Collecting = "Collecting"
    Merging = "Merging"
    Releasing = "Releasing"
    Completed = "Completed"

    @property
    def state(self) -> DaqState:
        """The ``DaqState`` that holds this substate in dpmd."""
        if self in (DaqSubState.Completed, DaqSubState.Aborted):
            return DaqState.StateCompleted
        if self in _ACQUIRING:
            return DaqState.StateAcquiring
        return DaqState.StateMerging

    @property
    def is_final(self) -> bool:
        return self in (DaqSubState.Completed, DaqSubState.Aborted)


_ACQUIRING = frozenset(
    {
        DaqSubState.NotStarted,
        DaqSubState.Starting,
        DaqSubState.Acquiring,
        DaqSubState.Stopping,
        DaqSubState.Stopped,
    }
)


class AlertSeverity(WireEnum):
    """An alert's severity; only ``Error`` makes the DAQ's ``error`` flag true."""

    Error = "Error"
    Warning = "Warning"
    Info = "Info"


class DaqError(Exception):
    """A command the DPM rejects: the ICD's ``DaqException``.

    It travels to the client as JSON-RPC error ``-32000``; ``daq_id`` is the
    DAQ the command was about, or ``""``.
    """

    def __init__(self, message: str, daq_id: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.daq_id = daq_id


@dataclass(frozen=True)
class DaqAlert:
    """One active alert of a DAQ; (category, key) identifies the condition.

    An Error alert also says whether retrying can help: ``terminal`` is true
    when neither waiting nor ``RetryMergeDaq`` can help until something outside
    changes (the specification, a source, the configuration), and ``attempts``
    is how many times the stage it is about has run for this DAQ.
    """

    category: str
    key: str
    severity: AlertSeverity
    description: str
    timestamp: float
    terminal: bool = False
    attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "category": self.category,
            "key": self.key,
            "severity": self.severity.value,
            "description": self.description,
            "timestamp": self.timestamp,
        }
        if self.severity is AlertSeverity.Error:
            wire["terminal"] = self.terminal
            wire["attempts"] = self.attempts
        return wire

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DaqAlert:
        return cls(
            category=obj["category"],
            key=obj["key"],
            severity=AlertSeverity(obj["severity"]),
            description=obj["description"],
            timestamp=float(obj["timestamp"]),
            terminal=bool(obj.get("terminal", False)),
            attempts=int(obj.get("attempts", 0)),
        )


@dataclass(frozen=True)
class DaqStatus:
    """What clients see of a DAQ; ``error`` is derived from the alerts."""

    id: str
    file_id: str
    substate: DaqSubState
    alerts: tuple[DaqAlert, ...] = ()
    message: str = ""
    result: str = ""
    timestamp: float = 0.0

    @property
    def state(self) -> DaqState:
        return self.substate.state

    @property
    def error(self) -> bool:
        return any(alert.severity is AlertSeverity.Error for alert in self.alerts)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "file_id": self.file_id,
            "state": self.state.value,
            "substate": self.substate.value,
            "error": self.error,
            "alerts": [alert.to_json() for alert in self.alerts],
            "message": self.message,
            "result": self.result,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DaqStatus:
        return cls(
            id=obj["id"],
            file_id=obj["file_id"],
            substate=DaqSubState(obj["substate"]),
            alerts=tuple(DaqAlert.from_json(a) for a in obj.get("alerts", ())),
            message=obj.get("message", ""),
            result=obj.get("result", ""),
            timestamp=float(obj.get("timestamp", 0.0)),
        )


@dataclass(frozen=True)
class DaqReply:
    """The contract's ``DaqReply``: the DAQ's id, and whether the command partly failed."""

    id: str
    error: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "error": self.error}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DaqReply:
        return cls(id=obj["id"], error=bool(obj["error"]))


@dataclass(frozen=True)
class StorageStatus:
    """Space on the workspace's file system, in bytes, as ``statvfs`` reports it."""

    path: str
    capacity: int
    free: int
    available: int
    timestamp: float

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "capacity": self.capacity,
            "free": self.free,
            "available": self.available,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> StorageStatus:
        return cls(
            path=obj["path"],
            capacity=int(obj["capacity"]),
            free=int(obj["free"]),
            available=int(obj["available"]),
            timestamp=float(obj["timestamp"]),
        )


@dataclass(frozen=True)
class InternalDaqStatus:
    """The status plus the server's own bookkeeping (``detail``), for operators."""

    status: DaqStatus
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status.to_json(), "detail": self.detail}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> InternalDaqStatus:
        return cls(status=DaqStatus.from_json(obj["status"]), detail=dict(obj["detail"]))
