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

This room is the stage: it plans the deliveries, runs each one not yet done
(``release_local`` or ``release_remote``, sharing a ``ReleaseRun``) and turns
what went wrong at each receiver into one ``Problem``; after an abort,
``remove_partial_deliveries`` takes away what was staged and not delivered.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks

from dpmd.copyfile import remove_stale_temporary
from dpmd.digest import Digest
from dpmd.record import Delivery
from dpmd.spec import OlasReceiver
from dpmd.stages import Problem, StageError, StageHost
from dpmd.stages.manifest import manifest_name, remove_manifest
from dpmd.stages.release_local import deliver_local, remove_staging
from dpmd.stages.release_remote import deliver_remote
from dpmd.stages.release_run import ReleaseProblem, ReleaseRun, destinations, release_path
from dpmd.stages.transfer import part_name

TERMINAL_ERRORS = {errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EEXIST, errno.EROFS}
"""Receiver problems that a retry cannot mend until someone changes the receiver."""


@inlineCallbacks
def release(host: StageHost) -> Any:
    """Deliver to every receiver not yet served; fires with the first one's path."""
    run = ReleaseRun(host)
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
        deliver = deliver_remote if target.host else deliver_local
        try:
            yield deliver(run, target)
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
