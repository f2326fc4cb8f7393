"""Will the product fit? Compare what the write needs with the free space, before writing.

The plan knows the size of every HDU, so the space a merge needs is known
before the first byte is written. Checking it up front turns a full disk into
one clear message (and exit code 5) instead of a failed copy halfway through
a large product. `posix_fallocate` in the writer still guards the narrow race
with other writers on the same file system.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .errors import OutputError
from .plan import Mode, Plan

StatVfs = Callable[[str], os.statvfs_result]
#: What a roll-back record adds to the target's saved header (its JSON line).
_ROLLBACK_OVERHEAD = 4096


def needed_bytes(plan: Plan) -> int:
    """Bytes the write adds to the output's file system.

    A new product, a rewritten target and a `-o` product are written whole
    into a new file while any old one still exists; an in-place update that
    fits appends the sources' extensions and saves a roll-back record holding
    the target's header.
    """
    if plan.mode is not Mode.IN_PLACE:
        return plan.size
    assert plan.target is not None and plan.spec.target_source is not None
    target = plan.spec.target_source.source_name
    appended = sum(piece.length for piece in plan.pieces if piece.source_name != target)
    return appended + plan.target.primary.header_size + _ROLLBACK_OVERHEAD


def _existing_directory(path: str) -> str:
    """The output's directory, or its nearest existing ancestor (a dry run may
    plan into a directory that does not exist yet)."""
    directory = os.path.dirname(path)
    while not os.path.isdir(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    return directory


def _mount_point(directory: str) -> str:
    """The mount point of the file system holding `directory`, to name it in the message."""
    try:
        device = os.stat(directory).st_dev
        while True:
            parent = os.path.dirname(directory)
            if parent == directory or os.stat(parent).st_dev != device:
                return directory
            directory = parent
    except OSError:
        return directory


def check_space(plan: Plan, statvfs: StatVfs = os.statvfs) -> None:
    """Raise OutputError when the product cannot fit in the free space of its file system.

    Free space is what an unprivileged writer may use (`f_bavail * f_frsize`);
    each file needs whole blocks of `f_frsize` bytes.
    """
    directory = _existing_directory(plan.output)
    try:
        status = statvfs(directory)
    except OSError as exc:
        raise OutputError(f"cannot tell the free space of {directory}: {exc.strerror}") from exc
    block = status.f_frsize or status.f_bsize or 1
    needed = -(-needed_bytes(plan) // block) * block
    free = status.f_bavail * block
    if needed > free:
        what = "the update of the target" if plan.mode is Mode.IN_PLACE else "the product"
        raise OutputError(
            f"{plan.output} cannot be written: {what} needs {needed} bytes; only "
            f"{free} are free on {_mount_point(directory)}"
        )
