"""Delivering to a receiver on this host: a link or a copy under the staging name, then a rename.

The product is staged by a hard link, else (on another file system, where
the receiver allows it) by a symbolic link to its copy in the workspace's
``linked/`` folder, else by a copy in a child process (``dpmd.copyfile``).
Its manifest is written beside it, then one rename that never replaces a
file gives it its final name.  A file already under that name counts as
delivered only if it is the product.

The blocking steps are plain functions run off the reactor (``run_blocking``);
``deliver_local`` strings them together and records each step through the
``ReleaseRun``.  It calls the run, the host and the modules below the stages.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks

from dpmd.durable import fsync_directory, rename_no_replace
from dpmd.locations import resolved_confinement_problem
from dpmd.record import Delivery
from dpmd.stages.manifest import manifest_name, write_manifest
from dpmd.stages.release_run import Destination, ReleaseProblem, ReleaseRun
from dpmd.stages.transfer import part_name
from dpmd.workers import python_command


class NeedsCopy(Exception):
    """A link cannot be made; the product must be copied."""


# -- blocking steps at a local receiver (run off the reactor) ------------------------


def same_file(path: Path, product: Path) -> bool:
    """``path`` (followed if a symbolic link) is the product's inode."""
    try:
        return os.path.samefile(path, product)
    except OSError:
        return False


def usable_directory(directory: Path, create: bool) -> None:
    if create:
        directory.mkdir(parents=True, exist_ok=True)
    if not directory.is_dir():
        raise OSError(errno.ENOTDIR, "not an existing directory", str(directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, "not writable", str(directory))


def remove_staging(staging: Path) -> None:
    """Remove a staging name of ours (a file or a link; a link is never followed)."""
    try:
        info = os.lstat(staging)
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
        raise OSError(errno.EEXIST, "something that is not a file is in the way", str(staging))
    os.unlink(staging)


def stage_by_link(product: Path, destination: Destination, staging: Path, anchor: Path) -> str:
    """Put the product at ``staging`` by hard or symbolic link; or raise ``NeedsCopy``.

    A symbolic link must outlive the DAQ's folder, which moves to the archive:
    it points at ``anchor``, a hard link of the product in the workspace's
    ``linked/`` folder, which never moves.
    """
    usable_directory(destination.directory, create=destination.is_default)
    remove_staging(staging)
    try:
        os.link(product, staging)
        how = "link"
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        if not destination.allow_symlink:
            raise NeedsCopy() from None
        anchor.parent.mkdir(parents=True, exist_ok=True)
        if not same_file(anchor, product):
            anchor.unlink(missing_ok=True)
            os.link(product, anchor)
            fsync_directory(anchor.parent)
        os.symlink(anchor, staging)
        how = "symlink"
    fsync_directory(destination.directory)
    return how


def publish(staging: Path, final: Path) -> bool:
    """Rename the staged product to its final name; False if a file is already there."""
    try:
        rename_no_replace(staging, final)
    except FileExistsError:
        return False
    fsync_directory(final.parent)
    return True


def find_final(final: Path, product: Path) -> str:
    """What the final name holds now: ``absent``, ``product`` (same inode) or ``other``."""
    if not os.path.lexists(final):
        return "absent"
    return "product" if same_file(final, product) else "other"


# -- one delivery --------------------------------------------------------------------


@inlineCallbacks
def deliver_local(run: ReleaseRun, destination: Destination) -> Any:
    """Take one local receiver's delivery from where its record says it is to ``delivered``."""
    host, key = run.host, destination.key
    config = host.config
    # QueueDaq checked the path as written; a link on the way may lead elsewhere.
    outside = yield host.run_blocking(resolved_confinement_problem,
                                      str(destination.directory), config.release_allowed,
                                      config.workspace)  # fmt: skip
    if outside:
        raise ReleaseProblem(f"receiver {key}: {outside}")
    final = destination.directory / run.name
    staging = destination.directory / part_name(run.name)
    if run.entry(key)["state"] == Delivery.STAGED:
        if not (yield host.run_blocking(os.path.lexists, staging)):
            yield run.record_state(key, Delivery.DELIVERED,
                                   f"released to {final} (found done)")  # fmt: skip
            return
    else:
        found = yield host.run_blocking(find_final, final, run.product)
        if found != "absent":
            yield accept_existing(run, destination, final, found)
            return
        how = yield stage_local(run, destination, staging)
        yield run.record_state(key, Delivery.STAGED, f"receiver {key}: staged ({how})",
                               how=how)  # fmt: skip
    yield write_local_manifest(run, destination)
    if not (yield host.run_blocking(publish, staging, final)):
        found = yield host.run_blocking(find_final, final, run.product)
        yield accept_existing(run, destination, final, found)
        yield host.run_blocking(remove_staging, staging)
        return
    how = run.entry(key)["how"]
    yield run.record_state(key, Delivery.DELIVERED, f"released to {final} ({how})")


@inlineCallbacks
def write_local_manifest(run: ReleaseRun, destination: Destination) -> Any:
    """Before the product appears under its name: its manifest beside it."""
    if not destination.manifest:
        return
    content = yield run.manifest_bytes()
    yield run.host.run_blocking(write_manifest, destination.directory, manifest_name(run.name),
                                content, run.host.daq_id)  # fmt: skip


@inlineCallbacks
def stage_local(run: ReleaseRun, destination: Destination, staging: Path) -> Any:
    anchor = run.host.linked_dir / run.name
    try:
        how = yield run.host.run_blocking(stage_by_link, run.product, destination, staging,
                                          anchor)  # fmt: skip
    except NeedsCopy:
        yield copy_product(run, staging)
        how = "copy"
    return how


@inlineCallbacks
def copy_product(run: ReleaseRun, staging: Path) -> Any:
    """Copy in a child process (``dpmd.copyfile``), within ``limits.transfer``."""
    host = run.host
    yield host.transfer_slots.acquire()
    try:
        argv = python_command(host.config.python, "dpmd.copyfile", str(run.product),
                              str(staging))  # fmt: skip
        child = host.spawn("copy", argv)
        status = yield child.wait()
    finally:
        host.transfer_slots.release()
    if not status.ok:
        reason = child.last_error_line() or child.describe_end()
        raise OSError(errno.EIO, reason, str(staging))


@inlineCallbacks
def accept_existing(run: ReleaseRun, destination: Destination, final: Path, found: str) -> Any:
    """A file is at the final name: it counts as delivered only if it is the product."""
    how = "existing"
    if found == "product":
        how = "symlink" if final.is_symlink() else "link"
    else:
        other = yield run.file_digest(str(final))
        if other != run.digest:
            raise run.conflict(destination, str(final), other)
    yield write_local_manifest(run, destination)
    yield run.record_state(destination.key, Delivery.DELIVERED,
                           f"released to {final} (it was already there)", how=how)  # fmt: skip
