"""The record store: every DAQ ever accepted, in one SQLite database.

SQLite in WAL mode with ``synchronous=FULL``: a commit is on disk when it
returns, many changes in one transaction cost one ``fsync`` (the journal's
group commit), a change of several records is atomic, and a DAQ is found by
id or by state through an index, so the history can grow for years without
start-up or look-ups growing with it.  SQLite's own crash and I/O-error
testing is the standard we rely on; it needs a local file system (see
docs/workspace.md).

Everything here blocks.  The server calls it from the journal's writer
thread (changes) and from a reader thread (look-ups), each with a
connection of its own; only start-up calls it on the reactor thread, before
the reactor runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import cast

FILE_NAME = "dpmd.sqlite3"
SCHEMA_VERSION = 1
_ROWS_PER_INSERT = 200
"""New DAQs per INSERT statement: 1,000 parameters, far below SQLite's limit."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS daq (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    specification BLOB NOT NULL,
    record TEXT NOT NULL,
    substate TEXT NOT NULL,
    finished_at REAL,
    archived INTEGER NOT NULL DEFAULT 0,
    folder_removed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS daq_unfinished ON daq (seq) WHERE archived = 0;
CREATE INDEX IF NOT EXISTS daq_substate ON daq (substate);
CREATE INDEX IF NOT EXISTS daq_retention ON daq (finished_at)
    WHERE archived = 1 AND folder_removed = 0;
CREATE INDEX IF NOT EXISTS daq_finished ON daq (finished_at) WHERE archived = 1;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS provenance (id TEXT PRIMARY KEY, cards TEXT NOT NULL);
"""


class StoreError(Exception):
    """The store could not commit or read; the text is SQLite's reason."""


@dataclass(frozen=True)
class Insert:
    """A new DAQ.  Its outcome: ``INSERTED``, ``IDENTICAL`` (the same specification is
    already stored under that id), ``DIFFERENT`` or ``DIFFERENT_ARCHIVED``."""

    daq_id: str
    seq: int
    specification: bytes
    record: str
    substate: str


@dataclass(frozen=True)
class Update:
    """A DAQ's new record; ``archived`` moves it out of the unfinished set for good."""

    daq_id: str
    record: str
    substate: str
    finished_at: float | None = None
    archived: bool = False


@dataclass(frozen=True)
class FolderRemoved:
    """Retention removed the archived DAQ's folder; its record stays."""

    daq_id: str


@dataclass(frozen=True)
class Provenance:
    """Where each card of a DAQ's product header came from (a JSON array), once merged."""

    daq_id: str
    cards: str


Change = Insert | Update | FolderRemoved | Provenance

INSERTED = "inserted"
IDENTICAL = "identical"
DIFFERENT = "different"
DIFFERENT_ARCHIVED = "different-archived"


@dataclass(frozen=True)
class StoredDaq:
    """A DAQ's row, as a look-up finds it (archived DAQs included)."""

    daq_id: str
    seq: int
    record: str
    archived: bool
    folder_removed: bool


@dataclass(frozen=True)
class ImportedDaq:
    """A DAQ read from a workspace of the file-per-DAQ layout."""

    daq_id: str
    seq: int
    specification: bytes
    record: str
    substate: str
    finished_at: float | None
    archived: bool


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating) the store; the connection may move to another thread."""
    try:
        connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=OFF")
        return connection
    except sqlite3.Error as error:
        raise StoreError(f"cannot open the store {path}: {error}") from None


class Store:
    """One connection to the store, used by one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- start-up (reactor thread, before the reactor runs) --------------------

    def create_schema(self) -> bool:
        """Create the tables if need be; True when the store is new (nothing imported yet)."""
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
                return True
        if int(row[0]) != SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.path} has schema version {row[0]}; this dpmd reads "
                f"version {SCHEMA_VERSION}"
            )
        return False

    def next_seq(self) -> int:
        (highest,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM daq").fetchone()
        return int(highest) + 1

    def unfinished(self) -> list[tuple[int, str, str]]:
        """``(seq, id, record)`` of every DAQ not archived, in queue order."""
        return self._db.execute(
            "SELECT seq, id, record FROM daq WHERE archived = 0 ORDER BY seq"
        ).fetchall()

    def set_aside(self, daq_id: str) -> None:
        """A record that cannot be read: keep it, but never load it again."""
        with self._transaction():
            self._db.execute(
                "UPDATE daq SET archived = 1, substate = 'SetAside' WHERE id = ?", (daq_id,)
            )

    def import_daqs(self, daqs: Iterable[ImportedDaq]) -> int:
        """Store the DAQs of an old workspace, all in one transaction."""
        count = 0
        with self._transaction():
            for daq in daqs:
                self._db.execute(
                    "INSERT INTO daq (seq, id, specification, record, substate, finished_at,"
                    " archived) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (daq.seq, daq.daq_id, daq.specification, daq.record, daq.substate,
                     daq.finished_at, int(daq.archived)),
                )  # fmt: skip
                count += 1
        return count

    # -- the writer ----------------------------------------------------------------

    def commit(self, changes: Sequence[Change]) -> list[str | None]:
        """Apply every change in one transaction; the outcome of each, in order.

        Either all of them are on disk when this returns, or (it raises
        ``StoreError``) none of them is.  New DAQs side by side go in as one
        statement: every statement is a round of the writer thread for the
        interpreter lock, which the reactor holds while it validates the next
        arrivals.
        """
        try:
            with self._transaction():
                outcomes: list[str | None] = []
                for kind, run in groupby(changes, key=type):
                    if kind is Insert:
                        outcomes += self._insert(cast(list[Insert], list(run)))
                    else:
                        for change in run:
                            self._apply(cast(Update | FolderRemoved | Provenance, change))
                            outcomes.append(None)
                return outcomes
        except sqlite3.Error as error:
            raise StoreError(str(error)) from None

    def _insert(self, inserts: list[Insert]) -> list[str | None]:
        outcomes: list[str | None] = []
        for first in range(0, len(inserts), _ROWS_PER_INSERT):
            chunk = inserts[first : first + _ROWS_PER_INSERT]
            cursor = self._db.execute(
                "INSERT INTO daq (seq, id, specification, record, substate) VALUES "
                + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
                + " ON CONFLICT (id) DO NOTHING",
                [value for change in chunk for value in (
                    change.seq, change.daq_id, change.specification, change.record,
                    change.substate)],
            )  # fmt: skip
            if cursor.rowcount == len(chunk):
                outcomes += [INSERTED] * len(chunk)
            else:  # a known id among them (a resend): which, and how it compares
                outcomes += [self._known(change) for change in chunk]
        return outcomes

    def _known(self, change: Insert) -> str:
        seq, stored, archived = self._db.execute(
            "SELECT seq, specification, archived FROM daq WHERE id = ?", (change.daq_id,)
        ).fetchone()
        if seq == change.seq:
            return INSERTED
        if bytes(stored) == change.specification:
            return IDENTICAL
        return DIFFERENT_ARCHIVED if archived else DIFFERENT

    def _apply(self, change: Update | FolderRemoved | Provenance) -> None:
        if isinstance(change, Update):
            self._db.execute(
                "UPDATE daq SET record = ?, substate = ?, finished_at = ?, archived = ?"
                " WHERE id = ?",
                (change.record, change.substate, change.finished_at, int(change.archived),
                 change.daq_id),
            )  # fmt: skip
        elif isinstance(change, Provenance):
            self._db.execute("INSERT OR REPLACE INTO provenance (id, cards) VALUES (?, ?)",
                             (change.daq_id, change.cards))  # fmt: skip
        else:
            self._db.execute("UPDATE daq SET folder_removed = 1 WHERE id = ?", (change.daq_id,))

    # -- the reader ----------------------------------------------------------------------

    def find(self, daq_id: str) -> StoredDaq | None:
        row = self._db.execute(
            "SELECT seq, record, archived, folder_removed FROM daq WHERE id = ?", (daq_id,)
        ).fetchone()
        if row is None:
            return None
        return StoredDaq(daq_id, row[0], row[1], bool(row[2]), bool(row[3]))

    def specification(self, daq_id: str) -> bytes:
        row = self._db.execute("SELECT specification FROM daq WHERE id = ?", (daq_id,)).fetchone()
        if row is None:
            raise StoreError(f"no DAQ {daq_id!r} in the store")
        return bytes(row[0])

    def archived_folders(self) -> dict[str, bool]:
        """Every archived DAQ's id, and whether retention removed its folder (the audit)."""
        rows = self._db.execute("SELECT id, folder_removed FROM daq WHERE archived = 1")
        return {daq_id: bool(removed) for daq_id, removed in rows}

    def finished_between(self, since: float, until: float, limit: int) -> list[str]:
        """Records of the archived DAQs that finished in ``[since, until]``, oldest first."""
        rows = self._db.execute(
            "SELECT record FROM daq WHERE archived = 1 AND finished_at BETWEEN ? AND ?"
            " ORDER BY finished_at LIMIT ?",
            (since, until, limit),
        ).fetchall()
        return [row[0] for row in rows]

    def provenance(self, daq_id: str) -> str | None:
        row = self._db.execute("SELECT cards FROM provenance WHERE id = ?", (daq_id,)).fetchone()
        return None if row is None else str(row[0])

    def expired(self, finished_before: float, limit: int) -> list[str]:
        """Archived DAQs whose folder is still there and that finished before a time."""
        rows = self._db.execute(
            "SELECT id FROM daq WHERE archived = 1 AND folder_removed = 0 AND finished_at < ?"
            " ORDER BY finished_at LIMIT ?",
            (finished_before, limit),
        ).fetchall()
        return [row[0] for row in rows]

    # -- transactions -------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
