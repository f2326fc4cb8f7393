"""Releasing: deliver the product to each receiver as ``{fileId}.fits``.

A receiver on another host (``host`` set, and not this machine) gets the
product by rsync over ssh to a hidden temporary name in its ``path``, then an
ssh ``mv`` to the final name, so its ingestion never sees a partial file.

For a receiver on this host (no ``host``) the product is delivered by a hard
link; where that is impossible (another file system), by a symbolic link if
the receiver allows it, else by a copy to a hidden temporary name that is
renamed when complete, so the ingestion directory never shows a partial
file.  Without receivers the product goes to ``release_dir``.  A receiver
that already has the product is not sent it again: the record keeps the
deliveries, so a retry only visits the receivers that failed.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks

from dpmd.copyfile import temporary_name
from dpmd.durable import fsync_directory
from dpmd.locations import RemoteFile, is_local_host
from dpmd.spec import OlasReceiver
from dpmd.stages import StageContext, StageError
from dpmd.stages.transfer import (
    Meter,
    TransferFailed,
    part_name,
    remote_rename_argv,
    rsync_argv,
    run_with_retries,
)
from dpmd.workers import python_command

RELEASE_DIR_KEY = "release_dir"


@dataclass(frozen=True)
class Destination:
    key: str
    directory: Path
    host: str = ""
    allow_symlink: bool = True


def destinations(receivers: tuple[OlasReceiver, ...], release_dir: Path) -> list[Destination]:
    if not receivers:
        return [Destination(RELEASE_DIR_KEY, release_dir, "", False)]
    return [
        Destination(
            str(index),
            Path(receiver.path),
            "" if is_local_host(receiver.host) else receiver.host,
            receiver.allow_symlink,
        )
        for index, receiver in enumerate(receivers)
    ]


class NeedsCopy(Exception):
    """A link cannot be made; the product must be copied."""


def link_product(
    product: Path, destination: Destination, name: str, is_default: bool, anchor: Path
) -> str:
    """Deliver by hard or symbolic link (blocking); return how, or raise ``NeedsCopy``.

    A symbolic link must outlive the DAQ's folder, which moves to the archive
    when the DAQ ends: it points at ``anchor``, a hard link of the product in
    the workspace's ``linked/`` folder, which never moves.
    """
    directory = destination.directory
    if is_default:
        directory.mkdir(parents=True, exist_ok=True)
    if not directory.is_dir():
        raise OSError(errno.ENOTDIR, "not an existing directory", str(directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, "not writable", str(directory))
    target = directory / name
    if target.exists() or target.is_symlink():
        if target.exists() and os.path.samefile(target, product):
            return "symlink" if target.is_symlink() else "link"
        raise OSError(errno.EEXIST, "a different file of that name is already there", str(target))
    try:
        os.link(product, target)
        how = "link"
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        if not destination.allow_symlink:
            raise NeedsCopy() from None
        anchor.parent.mkdir(parents=True, exist_ok=True)
        if not (anchor.exists() and os.path.samefile(anchor, product)):
            os.link(product, anchor)
            fsync_directory(anchor.parent)
        os.symlink(anchor, target)
        how = "symlink"
    fsync_directory(directory)
    return how


@inlineCallbacks
def deliver(context: StageContext, product: Path, destination: Destination) -> Any:
    """Deliver to one local destination; fires with (path, how)."""
    name = context.daq.specification.archive_name
    target = destination.directory / name
    is_default = destination.key == RELEASE_DIR_KEY
    anchor = context.linked_dir / name
    try:
        how = yield context.run_blocking(
            link_product, product, destination, name, is_default, anchor
        )
    except NeedsCopy:
        yield copy_product(context, product, target)
        how = "copy"
    return str(target), how


@inlineCallbacks
def copy_product(context: StageContext, product: Path, target: Path) -> Any:
    """Copy in a child process (``dpmd.copyfile``), within ``limits.transfer``."""
    yield context.transfer_slots.acquire()
    try:
        child = context.spawn("copy", python_command("dpmd.copyfile", str(product), str(target)))
        status = yield child.wait()
    finally:
        context.transfer_slots.release()
    if not status.ok:
        reason = child.last_error_line() or status.describe()
        raise OSError(errno.EIO, reason, str(target))


@inlineCallbacks
def deliver_remote(context: StageContext, product: Path, destination: Destination) -> Any:
    """rsync to a hidden name at the receiver, then rename it there; fires with (path, how)."""
    name = context.daq.specification.archive_name
    final = str(destination.directory / name)
    part = str(destination.directory / part_name(name))
    remote = RemoteFile(host=destination.host, path=part)
    transfer = context.config.transfer
    meter = Meter()

    def show_progress() -> None:
        context.set_progress("releasing", meter.done, meter.total, "bytes")

    try:
        yield run_with_retries(
            context, "rsync", rsync_argv(transfer, str(product), remote.rsync_argument), meter,
            show_progress,
        )  # fmt: skip
        yield run_with_retries(
            context, "ssh", remote_rename_argv(transfer, remote, part, final), Meter(),
            lambda: None,
        )  # fmt: skip
    except TransferFailed as error:
        where = f"{destination.host}:{destination.directory}"
        raise OSError(errno.EIO, str(error), where) from None
    return f"{destination.host}:{final}", "rsync"


@inlineCallbacks
def release(context: StageContext) -> Any:
    """Deliver to every destination not yet served; fires with the first one's path."""
    daq = context.daq
    record = daq.record
    product = Path(record.product)
    targets = destinations(daq.specification.receivers, context.config.release_dir)
    problems: list[tuple[str, str]] = []
    for number, destination in enumerate(targets):
        context.set_progress("releasing", number, len(targets), "files")
        if destination.key in record.released:
            continue
        send = deliver_remote if destination.host else deliver
        try:
            path, how = yield send(context, product, destination)
        except OSError as error:
            where = error.filename or destination.directory
            problems.append(
                (
                    destination.key,
                    f"receiver {destination.key}: cannot release to {where}: {error.strerror}",
                )
            )
            continue
        released = {**record.released, destination.key: {"path": path, "how": how}}
        yield daq.note(f"released to {path} ({how})", released=released)
    if problems:
        raise StageError(problems)
    context.set_progress("releasing", len(targets), len(targets), "files")
    return record.released[targets[0].key]["path"]


def remove_partial_copies(
    receivers: tuple[OlasReceiver, ...], release_dir: Path, name: str
) -> None:
    """Remove temporary copies an interrupted release left at local receivers (blocking)."""
    for destination in destinations(receivers, release_dir):
        if not destination.host:
            temporary_name(destination.directory / name).unlink(missing_ok=True)
