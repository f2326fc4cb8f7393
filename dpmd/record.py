"""A DAQ's record: everything about it that survives a restart, and its stored form.

The record is immutable: a change builds a new record (``dataclasses.replace``),
the journal commits it, and only then does it replace the one in memory.  So
what clients are shown is always a record that is on disk.

Its stored form is one JSON object (a column of the store); ``FORMAT`` is
its version, and ``from_json`` also reads the records of the file-per-DAQ
workspace of earlier versions (format 1), which the store imports once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from dpmd.model import DaqAlert, DaqStatus, DaqSubState

FORMAT = 2


class Delivery:
    """The states of one receiver's delivery (``deliveries[key]["state"]``).

    ``planned``: recorded before anything is written at the receiver;
    ``staged``: the complete product is at the receiver under its hidden
    staging name, and the next step is the atomic rename to the final name;
    ``delivered``: the rename happened (the receiver may since have taken the
    file away, which is its right).
    """

    PLANNED = "planned"
    STAGED = "staged"
    DELIVERED = "delivered"


_EMPTY: MappingProxyType[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class DaqRecord:
    """Everything about one DAQ that survives a restart (one row of the store)."""

    id: str
    file_id: str
    seq: int
    substate: DaqSubState
    queued_at: float
    timestamp: float
    alerts: tuple[DaqAlert, ...] = ()
    message: str = ""
    result: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    history: tuple[dict[str, Any], ...] = ()
    sources: tuple[dict[str, Any], ...] = ()
    product: str = ""
    product_size: int = 0
    product_digest: dict[str, Any] | None = None
    """``{"size", "blake2b"}`` of the product, recorded before any delivery."""
    deliveries: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per receiver key: ``{"path", "how", "state"}`` (see ``Delivery``)."""
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per stage: ``{"attempts", "started_at", "ended_at", "last_error"}``, and
    ``"peak_rss_bytes"`` (the most memory one of the run's children held) once a run
    with children ended; records of earlier versions lack it: unknown."""
    recollect: tuple[str, ...] = ()
    """Sources a retry must collect again before the merge runs again: set when a merge
    fails for a source's sake (it changed since collection, or the merger cannot read
    it), cleared when they are collected."""

    def stage_bytes(self, stage: str) -> int:
        """What a stage moved: the sources collected, the product merged, the copies released."""
        if stage == "collecting":
            return sum(int(source.get("bytes") or 0) for source in self.sources)
        if stage == "merging":
            return self.product_size
        copies = sum(1 for delivery in self.deliveries.values()
                     if delivery["state"] == Delivery.DELIVERED and delivery["how"] != "existing")
        return self.product_size * copies

    @property
    def released(self) -> dict[str, dict[str, str]]:
        """The receivers that have the product: key → ``{"path", "how"}``."""
        return {
            key: {"path": delivery["path"], "how": delivery["how"]}
            for key, delivery in self.deliveries.items()
            if delivery["state"] == Delivery.DELIVERED
        }

    def status(self, extra_alerts: tuple[DaqAlert, ...] = ()) -> DaqStatus:
        return DaqStatus(
            id=self.id,
            file_id=self.file_id,
            substate=self.substate,
            alerts=self.alerts + extra_alerts,
            message=self.message,
            result=self.result,
            timestamp=self.timestamp,
        )

    def to_json(self) -> dict[str, Any]:
        document = {
            "format": FORMAT,
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
            "history": list(self.history),
            "sources": list(self.sources),
            "product": self.product,
            "product_size": self.product_size,
            "product_digest": self.product_digest,
            "deliveries": self.deliveries,
            "stages": self.stages,
        }
        if self.recollect:
            document["recollect"] = list(self.recollect)
        return document

    def encode(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DaqRecord:
        """Rebuild a record (format 2, or format 1 of the file-per-DAQ workspace)."""
        version = obj.get("format")
        if version == 1:
            deliveries = {
                key: {**value, "state": Delivery.DELIVERED}
                for key, value in dict(obj["released"]).items()
            }
        elif version == FORMAT:
            deliveries = dict(obj["deliveries"])
        else:
            raise ValueError(f"not a DAQ record of format 1 or {FORMAT}")
        return cls(
            id=obj["id"],
            file_id=obj["file_id"],
            seq=int(obj["seq"]),
            substate=DaqSubState(obj["substate"]),
            queued_at=float(obj["queued_at"]),
            timestamp=float(obj["timestamp"]),
            alerts=tuple(DaqAlert.from_json(alert) for alert in obj["alerts"]),
            message=obj["message"],
            result=obj["result"],
            started_at=obj["started_at"],
            finished_at=obj["finished_at"],
            history=tuple(obj["history"]),
            sources=tuple(obj["sources"]),
            product=obj["product"],
            product_size=int(obj.get("product_size", 0)),
            product_digest=obj.get("product_digest"),
            deliveries=deliveries,
            stages=dict(obj.get("stages", _EMPTY)),
            recollect=tuple(obj.get("recollect", ())),
        )

    @classmethod
    def decode(cls, text: str | bytes) -> DaqRecord:
        obj = json.loads(text)
        if not isinstance(obj, dict):
            raise ValueError("a DAQ record must be a JSON object")
        return cls.from_json(obj)
