"""The on-disk store of DAQs: the truth after a crash.

Layout (see docs/workspace.md)::

    <workspace>/
      dpmd.lock            the workspace lock
      incoming/<id>/       a DAQ being accepted (never acknowledged yet)
      daqs/<id>/           every DAQ not yet archived
        specification.json   exactly as received
        status.json          the DAQ's record (state, alerts, history, sources…)
        sources/             local copies of collected files
        logs/merge.log       the merger's log
        <product>.fits       the data product, until it is released
      archive/<id>/        finished DAQs (Completed or Aborted)
      linked/<id>/         products that receivers reach through a symbolic link
      corrupt/<id>.<n>/    DAQ folders that could not be read, set aside

A DAQ is accepted when its folder appears in ``daqs/`` by an atomic rename
of a complete, fsync'd folder from ``incoming/``; the queue order is the
``seq`` number in each record.  Every later change replaces ``status.json``
by write-temp, fsync, rename, fsync-directory.  All functions here block:
the server calls them through a ``SerialExecutor``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpmd.durable import fsync_directory, write_durably

SPECIFICATION = "specification.json"
STATUS = "status.json"
RECORD_FORMAT = 1


class DuplicateDaq(Exception):
    """The id is already in the workspace (queued, active or archived)."""


@dataclass(frozen=True)
class StoredDaq:
    daq_id: str
    path: Path
    specification: bytes
    record: dict[str, Any]


@dataclass(frozen=True)
class CorruptDaq:
    name: str
    moved_to: Path
    reason: str


def remove(path: Path) -> None:
    """Delete a folder and its contents, or a file or symbolic link, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def encode_record(record: dict[str, Any]) -> bytes:
    return json.dumps(record, indent=1, sort_keys=True).encode() + b"\n"


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.daqs = root / "daqs"
        self.archive = root / "archive"
        self.corrupt = root / "corrupt"

    def prepare(self) -> set[str]:
        """Create the folders, drop unacknowledged arrivals; return the archived ids."""
        for folder in (self.incoming, self.daqs, self.archive, self.corrupt):
            folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.incoming.iterdir():
            remove(leftover)
        fsync_directory(self.root)
        return {entry.name for entry in self.archive.iterdir() if entry.is_dir()}

    def daq_dir(self, daq_id: str) -> Path:
        return self.daqs / daq_id

    def archived_dir(self, daq_id: str) -> Path:
        return self.archive / daq_id

    def linked_dir(self, daq_id: str) -> Path:
        return self.root / "linked" / daq_id

    def create(self, daq_id: str, specification: bytes, record: dict[str, Any]) -> Path:
        """Make a DAQ's folder appear complete and durable, or raise ``DuplicateDaq``."""
        for existing in (self.daq_dir(daq_id), self.archived_dir(daq_id)):
            if existing.exists():
                where = "archived" if existing.parent == self.archive else "queued"
                raise DuplicateDaq(f"DAQ id '{daq_id}' was already {where}")
        staging = self.incoming / daq_id
        remove(staging)
        staging.mkdir()
        (staging / "sources").mkdir()
        (staging / "logs").mkdir()
        write_durably(staging / SPECIFICATION, specification)
        write_durably(staging / STATUS, encode_record(record))
        fsync_directory(self.incoming)
        final = self.daq_dir(daq_id)
        os.rename(staging, final)
        fsync_directory(self.daqs)
        fsync_directory(self.incoming)
        return final

    def save_record(self, daq_id: str, record: dict[str, Any]) -> None:
        write_durably(self.daq_dir(daq_id) / STATUS, encode_record(record))

    def archive_daq(self, daq_id: str) -> Path:
        """Move a finished DAQ's folder into ``archive/``."""
        target = self.archived_dir(daq_id)
        os.rename(self.daq_dir(daq_id), target)
        fsync_directory(self.archive)
        fsync_directory(self.daqs)
        return target

    def scan(self) -> tuple[list[StoredDaq], list[CorruptDaq]]:
        """Read every DAQ folder; set aside the ones that cannot be read."""
        stored: list[StoredDaq] = []
        corrupt: list[CorruptDaq] = []
        for folder in sorted(self.daqs.iterdir()):
            try:
                stored.append(self._load(folder))
            except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
                reason = f"{type(error).__name__}: {error}"
                corrupt.append(CorruptDaq(folder.name, self.set_aside(folder), reason))
        return stored, corrupt

    def _load(self, folder: Path) -> StoredDaq:
        if not folder.is_dir():
            raise ValueError("not a folder")
        specification = (folder / SPECIFICATION).read_bytes()
        record = json.loads((folder / STATUS).read_bytes())
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            raise ValueError(f"{STATUS} is not a DAQ record of format {RECORD_FORMAT}")
        if record.get("id") != folder.name:
            raise ValueError(f"{STATUS} names DAQ {record.get('id')!r}, not {folder.name!r}")
        return StoredDaq(folder.name, folder, specification, record)

    def set_aside(self, folder: Path) -> Path:
        """Move an unreadable DAQ folder into ``corrupt/`` so start-up can go on."""
        number = 0
        while (target := self.corrupt / f"{folder.name}.{number}").exists():
            number += 1
        os.rename(folder, target)
        fsync_directory(self.corrupt)
        fsync_directory(self.daqs)
        return target

    def read_archived_record(self, daq_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.archived_dir(daq_id) / STATUS).read_bytes())
        except (OSError, ValueError):
            return None
