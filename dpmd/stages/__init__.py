"""The stages a DAQ goes through: collect, merge, release.

A stage is a function of a ``StageHost`` returning a Deferred.  It fails
with ``StageError`` for the problems an operator can fix (the DAQ core turns
each into an Error alert keyed as the contract says), and it can always be
run again from its start, after a retry or a crash: it writes to temporary
names and renames when done, and what it did outside the workspace is
recorded before and after it is done (see ``release``).  Abort cancels the
stage's Deferred and stops its children.

A stage sees its DAQ only through ``StageHost``: it reads the specification
and the newest record, reports progress, notes changes to the record,
raises alerts and runs children.  Which stage runs when, and what its
result means for the record, is the DAQ core's (``dpmd.daq.running.stage_table``).

The rooms:

* ``collect``: every source available locally (read where it is, or fetched
  by rsync), checked and hashed;
* ``merge``: the merger (``dpmd-merge``) as a child process builds the product;
* ``release``: the release stage, exactly once per receiver; it delivers
  through ``release_local`` (link, symbolic link or copy, then a rename) and
  ``release_remote`` (rsync, then a remote ``mv``), which share a
  ``release_run`` (the receivers, the product's digest and manifest, the
  record of each delivery's steps);
* ``transfer``: rsync and short commands over ssh, with retries (collect
  and release use it); ``manifest``: the manifest beside a released product;
  ``remote_headers``: a remote file's headers over ssh, its data skipped (for
  ``CheckDaq``'s plan).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime

from dpmd.blocking import RunBlocking
from dpmd.config import Config
from dpmd.model import AlertSeverity
from dpmd.record import DaqRecord
from dpmd.spec import Specification
from dpmd.workers import ChildProcess


class Problem(NamedTuple):
    """One reason a stage cannot go on: it becomes one Error alert, keyed by ``key``.

    ``terminal``: retrying cannot help until something outside changes (the
    specification, a source, the configuration); false where waiting or a retry
    can (a network, a full disk, a file that is still to come).
    """

    key: str
    description: str
    terminal: bool = False
    category: str | None = None
    """An alert category of its own (e.g. ``SourceChanged``); else the stage's."""


class StageError(Exception):
    """Problems that block the stage: one ``Problem`` (or ``(key, description)``) each.

    ``recollect``: the sources (by name) that a retry must collect again before the
    stage can run again, because the problem is in what was collected.
    """

    def __init__(self, problems: Sequence[Problem | tuple[str, str]],
                 recollect: Sequence[str] = ()) -> None:  # fmt: skip
        self.problems = [Problem(*problem) for problem in problems]
        self.recollect = tuple(recollect)
        super().__init__("; ".join(problem.description for problem in self.problems))


class StageHost(Protocol):
    """What a stage may know and do."""

    @property
    def daq_id(self) -> str: ...

    @property
    def specification(self) -> Specification: ...

    @property
    def record(self) -> DaqRecord:
        """The DAQ's newest record (with the changes this stage noted)."""
        ...

    @property
    def directory(self) -> Path:
        """The DAQ's folder in the workspace."""
        ...

    @property
    def linked_dir(self) -> Path:
        """Where products live that receivers reach by symbolic link (they never move)."""
        ...

    @property
    def config(self) -> Config: ...

    @property
    def clock(self) -> IReactorTime: ...

    @property
    def run_blocking(self) -> RunBlocking: ...

    @property
    def merge_slots(self) -> DeferredSemaphore: ...

    @property
    def transfer_slots(self) -> DeferredSemaphore: ...

    def spawn(self, kind: str, argv: Sequence[str], **options: Any) -> ChildProcess:
        """Start a child that belongs to this DAQ (so that an abort stops it)."""
        ...

    def set_progress(self, stage: str, done: int, total: int, unit: str) -> None: ...

    def set_source_progress(self, name: str, done: int, total: int) -> None:
        """Bytes of one source being collected (shown in its ``sources[]`` entry)."""
        ...

    def note(self, message: str, **changes: Any) -> Deferred[None]:
        """Commit changes to the record's data fields, with a message."""
        ...

    def alert(self, category: str, key: str, severity: AlertSeverity,
              description: str) -> Deferred[None]: ...  # fmt: skip

    def keep_provenance(self, cards: str) -> Deferred[None]:
        """Store where each card of the product's header came from (a JSON array)."""
        ...
