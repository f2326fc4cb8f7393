"""What the status commands answer, for DAQs in memory and for archived ones.

An unfinished DAQ answers from memory, with its wire status made once per
change.  Any other id is an indexed look-up in the store: an archived DAQ
answers with its final status, whatever its age.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

from dpmd.daq.lifecycle import Daq
from dpmd.daq.persist.journal import Journal
from dpmd.daq.persist.store import StoredDaq
from dpmd.daq.queue import Registry
from dpmd.encoding import PreEncoded
from dpmd.model import DaqError
from dpmd.record import DaqRecord
from dpmd.workspace import Workspace


class Queries:
    """The status commands, for DAQs in memory (the registry) and in the store (the journal's
    reader); owns nothing, changes nothing."""

    def __init__(self, registry: Registry, journal: Journal, workspace: Workspace,
                 archived_folder: Callable[[str], Path]) -> None:  # fmt: skip
        self._registry = registry
        self._journal = journal
        self._workspace = workspace
        self._archived_folder = archived_folder

    def status(self, daq_id: str) -> PreEncoded | Deferred[dict[str, Any]]:
        daq = self._registry.get(daq_id)
        if daq is not None:
            return daq.encoded_status()
        return self.stored(daq_id).addCallback(lambda found: found[0].status().to_json())

    def active(self) -> PreEncoded:
        """Every unfinished DAQ's status, oldest first: the encoded statuses joined."""
        return PreEncoded(b"[" + b",".join(daq.status_json() for daq in self._registry) + b"]")

    def internal(self, daq_id: str) -> dict[str, Any] | Deferred[dict[str, Any]]:
        daq = self._registry.get(daq_id)
        if daq is not None:
            return {"status": daq.wire_status(), "detail": self._detail(daq.record, daq)}

        def answer(found: tuple[DaqRecord, StoredDaq]) -> dict[str, Any]:
            record, stored = found
            return {"status": record.status().to_json(),
                    "detail": self._detail(record, None, stored)}  # fmt: skip

        return self.stored(daq_id).addCallback(answer)

    def timeline(self, since: float | None, until: float | None,
                 limit: int) -> Deferred[dict[str, Any]]:  # fmt: skip
        """The DAQs that finished in the window (from the store, oldest first), then those
        still under way that started before its end: their stages' times and bytes."""
        low = -math.inf if since is None else since
        high = math.inf if until is None else until

        def answer(records: list[str]) -> dict[str, Any]:
            finished = [DaqRecord.decode(text) for text in records]
            running = [daq.record for daq in self._registry
                       if daq.started_at is not None and daq.started_at <= high]
            daqs = (finished + running)[:limit]  # fmt: skip
            return {"daqs": [_timeline_entry(record) for record in daqs],
                    "truncated": len(finished) + len(running) > limit}  # fmt: skip

        return self._journal.finished_between(low, high, limit + 1).addCallback(answer)

    def provenance(self, daq_id: str) -> Deferred[PreEncoded]:
        """Where each card of the DAQ's product header came from (for archived DAQs too)."""

        def answer(cards: str | None) -> Any:
            if cards is not None:
                return PreEncoded(cards.encode())
            if daq_id in self._registry:
                raise DaqError(f"DAQ '{daq_id}' has no product header yet: it is not merged",
                               daq_id)  # fmt: skip
            return self.stored(daq_id).addCallback(self._never_merged, daq_id)

        return self._journal.provenance(daq_id).addCallback(answer)

    @staticmethod
    def _never_merged(found: tuple[DaqRecord, StoredDaq], daq_id: str) -> None:
        substate = found[0].substate.value
        raise DaqError(f"DAQ '{daq_id}' ({substate}) was never merged: it has no provenance",
                       daq_id)  # fmt: skip

    def stored(self, daq_id: str) -> Deferred[tuple[DaqRecord, StoredDaq]]:
        """The record of a DAQ that is not in memory, or ``DaqError`` for an unknown id."""

        def found(stored: StoredDaq | None) -> tuple[DaqRecord, StoredDaq]:
            if stored is None or daq_id in self._registry:
                raise DaqError(f"unknown DAQ id '{daq_id}'", daq_id)
            return DaqRecord.decode(stored.record), stored

        return self._journal.find(daq_id).addCallback(found)

    def _detail(self, record: DaqRecord, daq: Daq | None,
                stored: StoredDaq | None = None) -> dict[str, Any]:  # fmt: skip
        archived = daq is None
        folder = (self._archived_folder(record.id) if archived
                  else self._workspace.daq_dir(record.id))  # fmt: skip
        return {
            "queued_at": record.queued_at,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "workspace": str(folder),
            "workspace_removed": bool(stored and stored.folder_removed),
            "progress": daq.progress if daq else None,
            "sources": _sources(record, daq),
            "processes": [child.describe() for child in daq.children] if daq else [],
            "archived": archived,
            "history": list(record.history),
            # Once archived, the product is the receivers' (see ``released``).
            "product": "" if archived else record.product,
            "product_digest": record.product_digest,
            "released": record.released,
            "deliveries": record.deliveries,
            "stages": record.stages,
        }


def _timeline_entry(record: DaqRecord) -> dict[str, Any]:
    stages = {name: {**run, "bytes": record.stage_bytes(name)}
              for name, run in record.stages.items()}  # fmt: skip
    return {"id": record.id, "substate": record.substate.value, "queued_at": record.queued_at,
            "started_at": record.started_at, "finished_at": record.finished_at,
            "stages": stages}  # fmt: skip


def _sources(record: DaqRecord, daq: Daq | None) -> list[dict[str, Any]]:
    """The sources as recorded, with the bytes of those being collected right now."""
    if daq is None or not daq.source_progress:
        return list(record.sources)
    entries = []
    for source in record.sources:
        progress = daq.source_progress.get(source["name"])
        if progress is not None and source["state"] == "pending":
            done, total = progress
            source = {**source, "state": "collecting", "bytes": done, "size": total}
        entries.append(source)
    return entries
