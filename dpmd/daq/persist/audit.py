"""``/dpm/AuditWorkspace``: the store and the files, checked against each other.

What is looked for (``kind`` of each problem):

* ``folder-without-record`` — a folder in ``daqs/`` or ``archive/`` that no
  DAQ of the store owns (a left-over): *repair* removes it;
* ``record-without-folder`` — an archived DAQ whose folder is gone although
  retention did not remove it: *repair* records it as removed.  A DAQ that has
  started and is not finished whose folder is gone is reported too; when it
  waits for a retry in ``Collecting`` or ``Merging``, *repair* makes its folder
  again, with its specification from the store, so that ``RetryMergeDaq`` runs
  the stage again (what the folder held — copies of remote sources, logs — is
  made again by the retry); a DAQ whose stage is running, or one in
  ``Releasing`` (its product went with the folder), is reported only;
* ``temporary`` — a temporary file of dpmd's (``.*.dpmd-part`` at a
  receiver or in a DAQ folder, ``.*.dpmd-tmp``, ``.*.tmp``) that no running
  DAQ is writing: *repair* removes it if it is a regular file of dpmd's user;
* ``product-changed`` — the product of an unfinished DAQ whose size or
  checksum is no longer the one recorded before its release: reported only;
* ``unreferenced-linked`` — a ``linked/<id>/`` copy of an archived DAQ that no
  receiver's symbolic link points into: *repair* removes it.

The receivers looked at are ``release_dir``, the roots of ``release.allowed``
(their top level) and the receivers of the unfinished DAQs.  It is an
operator's command: it reads the whole store and lists folders, off the
reactor, in a thread with a connection of its own.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpmd.daq.persist.store import FolderRemoved, Store
from dpmd.digest import Digest, file_digest
from dpmd.model import DaqSubState
from dpmd.record import DaqRecord, Delivery
from dpmd.workspace import Workspace, remove

TEMPORARY_SUFFIXES = (".dpmd-part", ".dpmd-tmp", ".tmp")


@dataclass
class Problem:
    """One thing the audit found: its kind, where, what, and whether it was repaired."""

    kind: str
    path: str
    detail: str
    repaired: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "detail": self.detail,
                "repaired": self.repaired}  # fmt: skip


@dataclass(frozen=True)
class Busy:
    """What the unfinished DAQs own right now (taken on the reactor before the audit)."""

    ids: frozenset[str]
    staging: frozenset[str]
    """Staging paths of deliveries under way: not left-overs."""
    receivers: frozenset[str]
    products: tuple[tuple[str, str, dict[str, Any]], ...]
    """``(daq id, product path, recorded digest)`` of products awaiting release."""
    started: tuple[tuple[str, str], ...] = ()
    """``(daq id, substate)`` of the DAQs past ``Scheduled``: each has a folder."""
    waiting: frozenset[str] = frozenset()
    """The started DAQs that wait for a retry (blocked, with no stage running)."""


REMADE_IN = frozenset({DaqSubState.Collecting.value, DaqSubState.Merging.value})
"""Where a DAQ whose folder is gone can go on once it is made again (a retry runs the
stage from its start); in ``Releasing`` its product went with the folder."""


def busy_of(records: list[DaqRecord], staging_name: Any,
            waiting: frozenset[str] = frozenset()) -> Busy:  # fmt: skip
    staging, receivers, products = set(), set(), []
    for record in records:
        for delivery in record.deliveries.values():
            final = Path(delivery["path"])
            receivers.add(str(final.parent))
            if delivery["state"] != Delivery.DELIVERED:
                staging.add(str(final.with_name(staging_name(final.name))))
        if record.product and record.product_digest:
            products.append((record.id, record.product, record.product_digest))
    started = tuple((record.id, record.substate.value) for record in records
                    if record.started_at is not None)  # fmt: skip
    return Busy(frozenset(record.id for record in records), frozenset(staging),
                frozenset(receivers), tuple(products), started, waiting)  # fmt: skip


def audit(store_path: Path, workspace: Workspace, receiver_roots: list[Path], busy: Busy,
          repair: bool) -> tuple[list[Problem], list[FolderRemoved]]:  # fmt: skip
    """Every problem found (and repaired where safe); the store changes repair needs."""
    problems: list[Problem] = []
    changes: list[FolderRemoved] = []
    with Store(store_path) as store:
        archived = store.archived_folders()
    for name in _entries(workspace.daqs):
        if name not in busy.ids and name not in archived:
            problems.append(_repaired(Problem("folder-without-record", str(workspace.daqs / name),
                                              "no DAQ of the store owns it"), repair,
                                      lambda n=name: remove(workspace.daqs / n)))  # fmt: skip
    present = set(_entries(workspace.archive))
    for name in sorted(present - set(archived)):
        problems.append(_repaired(Problem("folder-without-record", str(workspace.archive / name),
                                          "no archived DAQ of the store owns it"), repair,
                                  lambda n=name: remove(workspace.archive / n)))  # fmt: skip
    for daq_id, removed in sorted(archived.items()):
        if not removed and daq_id not in present and not workspace.daq_dir(daq_id).exists():
            problem = Problem("record-without-folder", str(workspace.archived_dir(daq_id)),
                              "the DAQ's folder is gone, though retention did not remove it")
            if repair:
                changes.append(FolderRemoved(daq_id))
                problem.repaired = True
            problems.append(problem)
    problems += _started_without_folder(store_path, workspace, busy, repair)
    for daq_id in sorted(busy.ids):
        folder = workspace.daq_dir(daq_id)
        if not folder.exists():
            continue  # not started yet, or its folder is made when it starts
        problems += _temporaries(folder, busy, repair, recursive=True)
    for root in sorted({*receiver_roots, *map(Path, busy.receivers)}):
        problems += _temporaries(root, busy, repair, recursive=False)
    for daq_id, product, recorded in busy.products:
        problems += _product_changed(daq_id, product, recorded)
    with Store(store_path) as store:
        for daq_id in _entries(workspace.linked):
            stored = store.find(daq_id) if daq_id in archived else None
            anchor = workspace.linked_dir(daq_id)
            if stored is None or not _unreferenced(anchor, DaqRecord.decode(stored.record)):
                continue
            problems.append(_repaired(Problem("unreferenced-linked", str(anchor),
                                              "no receiver's symbolic link points into it"),
                                      repair, lambda a=anchor: remove(a)))  # fmt: skip
    return problems, changes


def _started_without_folder(store_path: Path, workspace: Workspace, busy: Busy,
                            repair: bool) -> list[Problem]:  # fmt: skip
    """Unfinished DAQs past ``Scheduled`` whose folder is gone; made again where that
    lets a retry go on."""
    found = []
    for daq_id, substate in sorted(busy.started):
        folder = workspace.daq_dir(daq_id)
        if folder.exists():
            continue
        problem = Problem("record-without-folder", str(folder),
                          f"DAQ {daq_id} is {substate}, not finished, and its folder is gone")
        if substate not in REMADE_IN:
            problem.detail += "; its product went with it: abort the DAQ"
        elif daq_id not in busy.waiting:
            problem.detail += "; its stage is running: audit again once it has failed"
        elif repair:
            with Store(store_path) as store:
                workspace.prepare_daq(daq_id, store.specification(daq_id))
            problem.detail += ("; made again with its specification: RetryMergeDaq runs "
                               "the stage again")  # fmt: skip
            problem.repaired = True
        else:
            problem.detail += "; repair makes it again, so that RetryMergeDaq can go on"
        found.append(problem)
    return found


def _entries(folder: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(folder))
    except OSError:
        return []


def _repaired(problem: Problem, repair: bool, fix: Any) -> Problem:
    if repair:
        fix()
        problem.repaired = True
    return problem


def _temporaries(folder: Path, busy: Busy, repair: bool, recursive: bool) -> list[Problem]:
    found: list[Problem] = []
    try:
        entries = list(folder.rglob(".*") if recursive else folder.glob(".*"))
    except OSError:
        return found
    for path in entries:
        if not path.name.endswith(TEMPORARY_SUFFIXES) or str(path) in busy.staging:
            continue
        try:
            info = os.lstat(path)
        except OSError:
            continue
        ours = stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid()
        problem = Problem("temporary", str(path), "a temporary file of dpmd that nothing writes")
        if repair and (ours or stat.S_ISLNK(info.st_mode)):
            path.unlink(missing_ok=True)
            problem.repaired = True
        found.append(problem)
    return found


def _product_changed(daq_id: str, product: str, recorded: dict[str, Any]) -> list[Problem]:
    expected = Digest.from_json(recorded)
    try:
        actual = file_digest(product)
    except OSError as error:
        return [Problem("product-changed", product, f"DAQ {daq_id}: cannot read it "
                                                     f"({error.strerror})")]  # fmt: skip
    if actual == expected:
        return []
    return [Problem("product-changed", product, f"DAQ {daq_id}: it is {actual.describe()}; "
                                                f"{expected.describe()} was recorded")]  # fmt: skip


def _unreferenced(anchor: Path, record: DaqRecord) -> bool:
    for delivery in record.deliveries.values():
        if delivery.get("how") != "symlink":
            continue
        try:
            if Path(os.readlink(delivery["path"])).parent == anchor:
                return False
        except OSError:
            continue
    return True
