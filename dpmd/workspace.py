"""The workspace's folders: files only (the records are in the store).

Layout (see docs/workspace.md)::

    <workspace>/
      dpmd.lock            the workspace lock
      dpmd.sqlite3         the store: every DAQ's specification and record
      daqs/<id>/           a DAQ that has started and is not archived
        specification.json   the stored specification, written for the merger
        resolve.json         source name -> local path, written for the merger
        sources/             local copies of remote sources
        logs/merge.log       the merger's log
        <product>.fits       the data product, until it is released
      archive/<id>/        the logs of finished DAQs, until retention removes them
      linked/<id>/         products that receivers reach through a symbolic link
      corrupt/<name>.<n>/  folders of an old workspace that could not be imported

A DAQ's folder is made when the DAQ starts, so queueing one writes nothing
but its row in the store.  A folder in ``daqs/`` that belongs to no
unfinished DAQ is a left-over of a crash: that of a DAQ whose final record
is committed is archived, any other is removed at start.  Every function
here blocks: the server calls them from threads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dpmd.durable import fsync_directory

SPECIFICATION = "specification.json"


def remove(path: Path) -> None:
    """Delete a folder and its contents, or a file or symbolic link, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Workspace:
    """The workspace's folders, and the file work on a DAQ's folder (blocking: run off the
    reactor)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.daqs = root / "daqs"
        self.archive = root / "archive"
        self.linked = root / "linked"
        self.corrupt = root / "corrupt"

    def prepare(self) -> None:
        """Create the folders (the workspace itself exists: it holds the lock)."""
        for folder in (self.daqs, self.archive, self.linked, self.corrupt):
            folder.mkdir(exist_ok=True)
        fsync_directory(self.root)

    def daq_dir(self, daq_id: str) -> Path:
        return self.daqs / daq_id

    def archived_dir(self, daq_id: str) -> Path:
        return self.archive / daq_id

    def linked_dir(self, daq_id: str) -> Path:
        return self.linked / daq_id

    def prepare_daq(self, daq_id: str, specification: bytes) -> Path:
        """Make a starting DAQ's folder and put its specification there for the merger."""
        folder = self.daq_dir(daq_id)
        (folder / "sources").mkdir(parents=True, exist_ok=True)
        (folder / "logs").mkdir(exist_ok=True)
        target = folder / SPECIFICATION
        if not target.exists() or target.read_bytes() != specification:
            temporary = folder / f".{SPECIFICATION}.tmp"
            temporary.write_bytes(specification)
            os.replace(temporary, target)
        return folder

    def file_away(self, daq_id: str, product: str) -> None:
        """A finished DAQ: drop what the receivers have now, keep its logs in ``archive/``.

        A released product is the receivers' (a hard link shares its data; a
        symbolic link points into ``linked/``); copies of remote sources are
        not needed any more.  Safe to repeat after a crash.
        """
        folder = self.daq_dir(daq_id)
        if not folder.exists():
            return
        if product:
            Path(product).unlink(missing_ok=True)
        shutil.rmtree(folder / "sources", ignore_errors=True)
        target = self.archived_dir(daq_id)
        if target.exists():
            remove(target)
        os.rename(folder, target)
        fsync_directory(self.archive)
        fsync_directory(self.daqs)

    def leftovers(self, unfinished: set[str]) -> list[str]:
        """Names of folders in ``daqs/`` that belong to no unfinished DAQ."""
        return sorted(entry.name for entry in os.scandir(self.daqs) if entry.name not in unfinished)

    def remove_leftover(self, name: str) -> None:
        remove(self.daqs / name)
        fsync_directory(self.daqs)

    def remove_archived(self, daq_id: str) -> None:
        remove(self.archived_dir(daq_id))

    def linked_names(self) -> list[str]:
        return sorted(entry.name for entry in os.scandir(self.linked))

    def set_aside(self, folder: Path) -> Path:
        """Move a folder that cannot be read into ``corrupt/`` so start-up can go on."""
        number = 0
        while (target := self.corrupt / f"{folder.name}.{number}").exists():
            number += 1
        os.rename(folder, target)
        fsync_directory(self.corrupt)
        fsync_directory(folder.parent)
        return target
