"""Finished DAQs: their folders filed away, and removed after ``archive.keep_days``.

A DAQ is archived by the commit of its final record (``Completed`` or
``Aborted``): from then on the store answers for it.  What is left is
file work, done afterwards off the reactor and safe to repeat after a
crash: the released product and source copies are dropped from its folder,
which moves to ``archive/``.

Retention: a background task removes the ``archive/`` folders (the logs) of
DAQs that finished more than ``archive.keep_days`` ago, a bounded number per
run; their records stay in the store for ever.  A ``linked/<id>/`` folder —
the product's copy that receivers on another file system reach by a
symbolic link — is removed once the DAQ is archived and none of its
receivers' links points at it any more (the archive has ingested the file),
never before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks

from dpmd.daq.lifecycle import Daq
from dpmd.daq.persist.journal import Journal
from dpmd.daq.persist.store import FolderRemoved
from dpmd.daq.running.host import Means
from dpmd.logs import get_logger
from dpmd.record import DaqRecord
from dpmd.workspace import Workspace, remove

log = get_logger(__name__)

DAY = 86400.0
RETENTION_BATCH = 100
"""Archived folders removed per run of the retention task: its work is bounded."""


class Archive:
    """Files finished DAQs' folders away (off the reactor) and runs the retention task."""

    def __init__(self, means: Means, workspace: Workspace, journal: Journal) -> None:
        self._means = means
        self._workspace = workspace
        self._journal = journal
        self.filing: set[str] = set()
        """DAQs archived in the store whose folder is still on its way to ``archive/``."""

    def folder(self, daq_id: str) -> Path:
        """Where an archived DAQ's folder is now."""
        if daq_id in self.filing:
            return self._workspace.daq_dir(daq_id)
        return self._workspace.archived_dir(daq_id)

    def file_away(self, daq: Daq) -> Deferred[None]:
        """Move a finished DAQ's folder into ``archive/`` (its record is archived already)."""
        self.filing.add(daq.id)

        def failed(failure: Any) -> None:
            log.failure("DAQ {daq_id}: its folder could not be archived", failure,
                        daq_id=daq.id)  # fmt: skip

        def done(_: Any) -> None:
            log.info("DAQ {daq_id} archived ({substate})", daq_id=daq.id,
                     substate=daq.substate.value)  # fmt: skip

        moved = self._means.run_blocking(self._workspace.file_away, daq.id, daq.record.product)
        return moved.addCallbacks(done, failed).addBoth(lambda _: self.filing.discard(daq.id))

    @inlineCallbacks
    def retention_pass(self) -> Any:
        """One run of the retention task (a ``TimerService`` calls it)."""
        keep = self._means.config.archive.keep_days * DAY
        cutoff = self._means.clock.seconds() - keep
        expired = yield self._journal.expired(cutoff, RETENTION_BATCH)
        for daq_id in expired:
            yield self._means.run_blocking(self._workspace.remove_archived, daq_id)
            yield self._journal.commit(FolderRemoved(daq_id))
            log.info("DAQ {daq_id}: archived folder removed after {days} days", daq_id=daq_id,
                     days=self._means.config.archive.keep_days)  # fmt: skip
        names = yield self._means.run_blocking(self._workspace.linked_names)
        for daq_id in names[:RETENTION_BATCH]:
            stored = yield self._journal.find(daq_id)
            if stored is None or not stored.archived:
                continue
            record = DaqRecord.decode(stored.record)
            yield self._means.run_blocking(
                release_anchor, self._workspace.linked_dir(daq_id), record
            )


def release_anchor(anchor_dir: Path, record: DaqRecord) -> None:
    """Remove ``linked/<id>/`` unless a receiver's symbolic link still points into it."""
    for delivery in record.deliveries.values():
        if delivery.get("how") != "symlink":
            continue
        try:
            target = os.readlink(delivery["path"])
        except OSError:
            continue  # gone (ingested) or no longer a link: it points nowhere of ours
        if Path(target).parent == anchor_dir:
            return
    remove(anchor_dir)
