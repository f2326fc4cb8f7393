"""Start-up: open the store, import an old workspace once, load the unfinished DAQs.

The store is the only truth after a crash.  Start-up reads the records of
the DAQs that are not archived — never the archived ones, however many —
and does not validate their specifications again (the server stored them
after validating them; they are parsed when a DAQ starts).  A record that
cannot be decoded is set aside (kept in the store, never loaded again) and
logged.  This runs before the reactor does, so a store that cannot be
opened stops start-up with one line saying why.

Earlier versions kept each DAQ as ``daqs/<id>/`` or ``archive/<id>/`` with
``specification.json`` and ``status.json`` (record format 1), and new
arrivals in ``incoming/``.  The first start of this version reads them all
and stores them in one transaction: either every DAQ is in the store
afterwards, or (a crash, a full disk) none is and the next start imports
again.  Only then are the old ``status.json`` files deleted, so that the
store is the one truth.  A folder that cannot be read is moved to
``corrupt/`` and logged, as before.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from dpmd.daq.persist.store import FILE_NAME, ImportedDaq, Store
from dpmd.logs import get_logger
from dpmd.record import DaqRecord
from dpmd.workspace import SPECIFICATION, Workspace, remove

log = get_logger(__name__)

STATUS = "status.json"
INCOMING = "incoming"


@dataclass
class Recovered:
    """What start-up found: the store's two connections, the next queue number and the
    records of the unfinished DAQs."""

    writer: Store
    reader: Store
    next_seq: int
    records: list[DaqRecord] = field(default_factory=list)


def recover(workspace: Workspace) -> Recovered:
    """Open the store (creating it, importing an old workspace), read what is unfinished."""
    workspace.prepare()
    path: Path = workspace.root / FILE_NAME
    writer = Store(path)
    if writer.create_schema() and has_legacy_layout(workspace):
        _import(writer, workspace)
    reader = Store(path)
    records: list[DaqRecord] = []
    for _seq, daq_id, text in writer.unfinished():
        try:
            records.append(DaqRecord.decode(text))
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            writer.set_aside(daq_id)
            log.error("DAQ {daq_id}: its record cannot be read ({reason}); set aside",
                      daq_id=daq_id, reason=f"{type(error).__name__}: {error}")  # fmt: skip
    return Recovered(writer, reader, writer.next_seq(), records)


def _import(store: Store, workspace: Workspace) -> None:
    legacy = read_legacy(workspace)
    for name, moved_to, reason in legacy.set_aside:
        log.error("DAQ folder {name} is unreadable ({reason}); moved to {moved_to}",
                  name=name, reason=reason, moved_to=str(moved_to))  # fmt: skip
    count = store.import_daqs(legacy.daqs)
    forget_legacy_records(workspace, legacy.daqs)
    log.info("imported {count} DAQ(s) of the file-per-DAQ workspace into the store",
             count=count)  # fmt: skip


# -- the file-per-DAQ layout of earlier versions ---------------------------------------------


@dataclass
class LegacyWorkspace:
    """The DAQs of a file-per-DAQ workspace, read for the import, and the folders set aside."""

    daqs: list[ImportedDaq] = field(default_factory=list)
    set_aside: list[tuple[str, Path, str]] = field(default_factory=list)
    """``(name, moved to, reason)`` of each folder that could not be read."""


def has_legacy_layout(workspace: Workspace) -> bool:
    return (workspace.root / INCOMING).exists() or any(
        (folder / STATUS).exists()
        for parent in (workspace.daqs, workspace.archive)
        if parent.is_dir()
        for folder in parent.iterdir()
    )


def read_legacy(workspace: Workspace) -> LegacyWorkspace:
    """Every DAQ of the old layout, as rows for the store (blocking)."""
    found = LegacyWorkspace()
    remove(workspace.root / INCOMING)  # never acknowledged
    for parent, archived in ((workspace.daqs, False), (workspace.archive, True)):
        if not parent.is_dir():
            continue
        for folder in sorted(parent.iterdir()):
            try:
                found.daqs.append(_read_folder(folder, archived))
            except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
                reason = f"{type(error).__name__}: {error}"
                found.set_aside.append((folder.name, workspace.set_aside(folder), reason))
    found.daqs.sort(key=lambda daq: daq.seq)
    return found


def _read_folder(folder: Path, archived: bool) -> ImportedDaq:
    if not folder.is_dir():
        raise ValueError("not a folder")
    specification = (folder / SPECIFICATION).read_bytes()
    record = DaqRecord.from_json(json.loads((folder / STATUS).read_bytes()))
    if record.id != folder.name:
        raise ValueError(f"{STATUS} names DAQ {record.id!r}, not {folder.name!r}")
    return ImportedDaq(
        daq_id=record.id,
        seq=record.seq,
        specification=specification,
        record=record.encode(),
        substate=record.substate.value,
        finished_at=record.finished_at,
        archived=archived or record.substate.is_final,
    )


def forget_legacy_records(workspace: Workspace, imported: list[ImportedDaq]) -> None:
    """After the import is committed: the old records are no longer the truth."""
    for daq in imported:
        for parent in (workspace.daqs, workspace.archive):
            (parent / daq.daq_id / STATUS).unlink(missing_ok=True)
    for leftover in workspace.root.glob(f"*/*/.{STATUS}.tmp"):
        os.unlink(leftover)
