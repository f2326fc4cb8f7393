"""Start-up: open the store, import an old workspace once, load the unfinished DAQs.

The store is the only truth after a crash.  Start-up reads the records of
the DAQs that are not archived — never the archived ones, however many —
and does not validate their specifications again (the server stored them
after validating them; they are parsed when a DAQ starts).  A record that
cannot be decoded is set aside (kept in the store, never loaded again) and
logged.  This runs before the reactor does, so a store that cannot be
opened stops start-up with one line saying why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dpmd.daq.legacy import forget_legacy_records, has_legacy_layout, read_legacy
from dpmd.daq.record import DaqRecord
from dpmd.daq.store import FILE_NAME, Store
from dpmd.logs import get_logger
from dpmd.workspace import Workspace

log = get_logger(__name__)


@dataclass
class Recovered:
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
