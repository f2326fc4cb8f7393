"""Releasing: deliver the product to each receiver as ``{fileId}.fits``, exactly once.

Every delivery takes the same three steps, each recorded in the store
(``deliveries[key]["state"]``, see ``dpmd.record.Delivery``):

1. **planned** — before anything is written at a receiver, the record holds
   the product's size and checksum and, per receiver, where it goes;
2. the complete product is put at the receiver under a hidden *staging* name
   (``.{fileId}.fits.dpmd-part``) — by a hard link, a symbolic link to the
   product's copy in ``linked/`` (another file system, if the receiver
   allows it), a copy, or rsync to another host — then **staged**;
3. one atomic rename that never replaces a file gives it its final name,
   then **delivered**.

The staging name is the evidence that survives a crash: when the record
says *staged*, a staging file still there means the rename did not happen
(it is done now); one that is gone means it did, even if the receiver has
since taken the file away — so a receiver that empties itself on arrival
gets the product once, never twice.  A file already under the final name
counts as delivered when it is the product (same inode, or same size and
checksum, however it got there); anything else there raises an Error alert
naming both checksums and is never overwritten.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks

from dpmd.copyfile import remove_stale_temporary
from dpmd.digest import ALGORITHM, Digest
from dpmd.durable import fsync_directory, rename_no_replace
from dpmd.locations import RemoteFile, is_local_host, resolved_confinement_problem
from dpmd.record import Delivery
from dpmd.spec import OlasReceiver
from dpmd.stages import Problem, StageError, StageHost
from dpmd.stages.manifest import build_manifest, manifest_name, remove_manifest, write_manifest
from dpmd.stages.transfer import (
    Meter,
    TransferFailed,
    part_name,
    remote_script_argv,
    rsync_argv,
    run_remote,
    run_with_retries,
)
from dpmd.workers import python_command
from dpmd.workspace import SPECIFICATION

RELEASE_DIR_KEY = "release_dir"

TERMINAL_ERRORS = {errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EEXIST, errno.EROFS}
"""Receiver problems that a retry cannot mend until someone changes the receiver."""


@dataclass(frozen=True)
class Destination:
    key: str
    directory: Path
    host: str = ""
    allow_symlink: bool = True
    manifest: bool = True

    @property
    def is_default(self) -> bool:
        return self.key == RELEASE_DIR_KEY


def destinations(receivers: tuple[OlasReceiver, ...], release_dir: Path) -> list[Destination]:
    if not receivers:
        return [Destination(RELEASE_DIR_KEY, release_dir, "", False, True)]
    return [
        Destination(
            str(index),
            Path(receiver.path),
            "" if is_local_host(receiver.host) else receiver.host,
            receiver.allow_symlink,
            receiver.manifest,
        )
        for index, receiver in enumerate(receivers)
    ]


class ReleaseProblem(Exception):
    """One receiver cannot be served now; the text is its alert's description."""

    def __init__(self, description: str, terminal: bool = True) -> None:
        super().__init__(description)
        self.terminal = terminal


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


# -- one stage run ----------------------------------------------------------------------


class Release:
    def __init__(self, host: StageHost) -> None:
        self.host = host
        self.name = host.specification.archive_name
        self.product = Path(host.record.product)
        self.digest: Digest | None = None
        self.manifest: bytes | None = None
        """The manifest written beside the product, built once per run."""

    def entry(self, key: str) -> dict[str, Any]:
        return self.host.record.deliveries[key]

    def record_state(self, key: str, state: str, message: str, **values: Any) -> Any:
        deliveries = dict(self.host.record.deliveries)
        deliveries[key] = {**deliveries[key], **values, "state": state}
        return self.host.note(message, deliveries=deliveries)

    @inlineCallbacks
    def file_digest(self, path: str) -> Any:
        """Size and checksum of a local file, computed by a child process."""
        lines: list[bytes] = []
        argv = python_command(self.host.config.python, "dpmd.digest", path)
        child = self.host.spawn("digest", argv, on_line=lines.append)
        status = yield child.wait()
        answer = json.loads(lines[-1]) if lines else {}
        if not status.ok or ALGORITHM not in answer:
            reason = answer.get("error") or child.last_error_line() or child.describe_end()
            raise OSError(errno.EIO, f"cannot read it to check it: {reason}", path)
        return Digest.from_json(answer)

    def conflict(self, destination: Destination, where: str, found: Digest) -> ReleaseProblem:
        assert self.digest is not None
        return ReleaseProblem(
            f"receiver {destination.key}: a different file is already at {where} "
            f"({found.describe()}; the product is {self.digest.describe()}); it is never "
            "overwritten: move it away, then RetryMergeDaq"
        )

    # -- local receivers ---------------------------------------------------------------

    @inlineCallbacks
    def deliver_local(self, destination: Destination) -> Any:
        host, key = self.host, destination.key
        config = host.config
        # QueueDaq checked the path as written; a link on the way may lead elsewhere.
        outside = yield host.run_blocking(resolved_confinement_problem,
                                          str(destination.directory), config.release_allowed,
                                          config.workspace)  # fmt: skip
        if outside:
            raise ReleaseProblem(f"receiver {key}: {outside}")
        final = destination.directory / self.name
        staging = destination.directory / part_name(self.name)
        if self.entry(key)["state"] == Delivery.STAGED:
            if not (yield host.run_blocking(os.path.lexists, staging)):
                yield self.record_state(key, Delivery.DELIVERED,
                                        f"released to {final} (found done)")  # fmt: skip
                return
        else:
            found = yield host.run_blocking(find_final, final, self.product)
            if found != "absent":
                yield self.accept_existing(destination, final, found)
                return
            how = yield self.stage_local(destination, staging)
            yield self.record_state(key, Delivery.STAGED, f"receiver {key}: staged ({how})",
                                    how=how)  # fmt: skip
        yield self.write_local_manifest(destination)
        if not (yield host.run_blocking(publish, staging, final)):
            found = yield host.run_blocking(find_final, final, self.product)
            yield self.accept_existing(destination, final, found)
            yield host.run_blocking(remove_staging, staging)
            return
        how = self.entry(key)["how"]
        yield self.record_state(key, Delivery.DELIVERED, f"released to {final} ({how})")

    @inlineCallbacks
    def manifest_bytes(self) -> Any:
        if self.manifest is None:
            self.manifest = yield self.host.run_blocking(
                build_manifest, self.host.record, self.product, self.name,
                self.host.directory / SPECIFICATION, self.host.clock.seconds(),
            )  # fmt: skip
        return self.manifest

    @inlineCallbacks
    def write_local_manifest(self, destination: Destination) -> Any:
        """Before the product appears under its name: its manifest beside it."""
        if not destination.manifest:
            return
        content = yield self.manifest_bytes()
        name = manifest_name(self.name)
        yield self.host.run_blocking(write_manifest, destination.directory, name, content,
                                     self.host.daq_id)  # fmt: skip

    @inlineCallbacks
    def send_remote_manifest(self, destination: Destination) -> Any:
        """rsync the manifest to a hidden name at the receiver, then ``mv`` it into place."""
        if not destination.manifest:
            return
        content = yield self.manifest_bytes()
        name = manifest_name(self.name)
        local = self.host.directory / name
        yield self.host.run_blocking(local.write_bytes, content)
        part = str(destination.directory / part_name(name))
        remote = RemoteFile(host=destination.host, path=part)
        argv = rsync_argv(self.host.config.transfer, str(local), remote.rsync_argument)
        yield run_with_retries(self.host, "rsync", argv, Meter(), lambda: None)
        yield self.remote(remote, "mv -f -- {0} {1}", part, str(destination.directory / name))

    @inlineCallbacks
    def stage_local(self, destination: Destination, staging: Path) -> Any:
        host = self.host
        anchor = host.linked_dir / self.name
        try:
            how = yield host.run_blocking(stage_by_link, self.product, destination, staging,
                                          anchor)  # fmt: skip
        except NeedsCopy:
            yield self.copy(staging)
            how = "copy"
        return how

    @inlineCallbacks
    def copy(self, staging: Path) -> Any:
        """Copy in a child process (``dpmd.copyfile``), within ``limits.transfer``."""
        host = self.host
        yield host.transfer_slots.acquire()
        try:
            argv = python_command(host.config.python, "dpmd.copyfile", str(self.product),
                                  str(staging))  # fmt: skip
            child = host.spawn("copy", argv)
            status = yield child.wait()
        finally:
            host.transfer_slots.release()
        if not status.ok:
            reason = child.last_error_line() or child.describe_end()
            raise OSError(errno.EIO, reason, str(staging))

    @inlineCallbacks
    def accept_existing(self, destination: Destination, final: Path, found: str) -> Any:
        """A file is at the final name: it counts as delivered only if it is the product."""
        how = "existing"
        if found == "product":
            how = "symlink" if final.is_symlink() else "link"
        else:
            other = yield self.file_digest(str(final))
            if other != self.digest:
                raise self.conflict(destination, str(final), other)
        if destination.host == "":
            yield self.write_local_manifest(destination)
        yield self.record_state(destination.key, Delivery.DELIVERED,
                                f"released to {final} (it was already there)", how=how)  # fmt: skip

    # -- remote receivers ---------------------------------------------------------------

    @inlineCallbacks
    def deliver_remote(self, destination: Destination) -> Any:
        key = destination.key
        final = str(destination.directory / self.name)
        staging = str(destination.directory / part_name(self.name))
        remote = RemoteFile(host=destination.host, path=staging)
        where = f"{destination.host}:{final}"
        try:
            if self.entry(key)["state"] == Delivery.STAGED:
                if not (yield self.remote_exists(remote, staging)):
                    yield self.record_state(key, Delivery.DELIVERED,
                                            f"released to {where} (found done)")  # fmt: skip
                    return
            else:
                found = yield self.remote_digest(remote, final)
                if found is not None:
                    if found != self.digest:
                        raise self.conflict(destination, where, found)
                    yield self.record_state(key, Delivery.DELIVERED,
                                            f"released to {where} (it was already there)",
                                            how="existing")  # fmt: skip
                    return
                yield self.rsync(remote)
                yield self.record_state(key, Delivery.STAGED, f"receiver {key}: staged (rsync)",
                                        how="rsync")  # fmt: skip
            yield self.send_remote_manifest(destination)
            if not (yield self.remote_publish(remote, staging, final)):
                found = yield self.remote_digest(remote, final)
                if found != self.digest:
                    raise self.conflict(destination, where, found or Digest(0, "?"))
        except TransferFailed as error:
            raise ReleaseProblem(f"receiver {key}: cannot release to {where}: {error}",
                                 terminal=error.terminal) from None  # fmt: skip
        yield self.record_state(key, Delivery.DELIVERED, f"released to {where} (rsync)")

    @inlineCallbacks
    def rsync(self, remote: RemoteFile) -> Any:
        meter = Meter()

        def show_progress() -> None:
            self.host.set_progress("releasing", meter.done, meter.total, "bytes")

        argv = rsync_argv(self.host.config.transfer, str(self.product), remote.rsync_argument)
        yield run_with_retries(self.host, "rsync", argv, meter, show_progress)

    def remote_exists(self, remote: RemoteFile, path: str) -> Any:
        script = "if [ -e {0} ] || [ -L {0} ]; then echo yes; else echo no; fi"
        return self.remote(remote, script, path).addCallback(lambda lines: lines == ["yes"])

    def remote_digest(self, remote: RemoteFile, path: str) -> Any:
        """``Digest`` of a remote file (``b2sum``, as BLAKE2b-512), or None if it is absent."""
        script = (
            "if [ -e {0} ] || [ -L {0} ]; then wc -c < {0} && b2sum < {0}; else echo absent; fi"
        )

        def parsed(lines: list[str]) -> Digest | None:
            if lines == ["absent"]:
                return None
            return Digest(int(lines[0]), lines[1].split()[0])

        return self.remote(remote, script, path).addCallback(parsed)

    def remote_publish(self, remote: RemoteFile, staging: str, final: str) -> Any:
        """``mv`` that refuses to replace a file (answering ``taken``)."""
        script = (
            "if [ -e {1} ] || [ -L {1} ]; then echo taken; else mv -f -- {0} {1} && echo moved; fi"
        )
        return self.remote(remote, script, staging, final).addCallback(
            lambda lines: lines == ["moved"]
        )

    def remote(self, remote: RemoteFile, script: str, *paths: str) -> Any:
        argv = remote_script_argv(self.host.config.transfer, remote, script, *paths)
        return run_remote(self.host, argv)


@inlineCallbacks
def release(host: StageHost) -> Any:
    """Deliver to every receiver not yet served; fires with the first one's path."""
    run = Release(host)
    targets = destinations(host.specification.receivers, host.config.release_dir)
    record = host.record
    if record.product_digest is None:
        digest = yield run.file_digest(record.product)
        planned = {
            target.key: {"path": release_path(target, run.name), "how": "",
                         "state": Delivery.PLANNED}
            for target in targets
        }  # fmt: skip
        yield host.note(f"releasing to {len(targets)} receiver(s)",
                        product_digest=digest.to_json(), deliveries=planned)  # fmt: skip
    run.digest = Digest.from_json(host.record.product_digest or {})
    problems: list[Problem] = []
    for number, target in enumerate(targets):
        host.set_progress("releasing", number, len(targets), "files")
        if run.entry(target.key)["state"] == Delivery.DELIVERED:
            continue
        deliver = run.deliver_remote if target.host else run.deliver_local
        try:
            yield deliver(target)
        except ReleaseProblem as problem:
            problems.append(Problem(target.key, str(problem), problem.terminal))
        except OSError as error:
            where = error.filename or target.directory
            problems.append(Problem(
                target.key, f"receiver {target.key}: cannot release to {where}: {error.strerror}",
                terminal=error.errno in TERMINAL_ERRORS,
            ))  # fmt: skip
    if problems:
        raise StageError(problems)
    host.set_progress("releasing", len(targets), len(targets), "files")
    return host.record.deliveries[targets[0].key]["path"]


def release_path(destination: Destination, name: str) -> str:
    final = str(destination.directory / name)
    return f"{destination.host}:{final}" if destination.host else final


def remove_partial_deliveries(
    receivers: tuple[OlasReceiver, ...],
    release_dir: Path,
    name: str,
    deliveries: dict[str, dict[str, Any]],
    daq_id: str,
) -> None:
    """Remove staging files at local receivers that were not delivered (blocking).

    An aborted DAQ leaves nothing half-made; a receiver that has the product
    (``delivered``) keeps it.
    """
    for destination in destinations(receivers, release_dir):
        state = deliveries.get(destination.key, {}).get("state")
        if destination.host or state == Delivery.DELIVERED:
            continue
        staging = destination.directory / part_name(name)
        remove_stale_temporary(staging)  # the copier's own temporary, if it is ours
        remove_staging(staging)
        remove_manifest(destination.directory, manifest_name(name), daq_id)
