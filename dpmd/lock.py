"""The workspace lock: one dpmd per workspace.

Two servers on one workspace would both think they own every DAQ in it.  The
lock is an ``flock`` on ``<workspace>/dpmd.lock``, held for the life of the
process (the kernel drops it when the process dies, even by ``kill -9``), and
the file names the holder so that the refusal can say who it is.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import psutil


class WorkspaceLocked(Exception):
    """Another process holds the workspace."""


class WorkspaceLock:
    """An exclusive ``flock`` on the workspace: one server per workspace, the holder named."""

    def __init__(self, workspace: Path) -> None:
        self.path = workspace / "dpmd.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``WorkspaceLocked`` naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(os.pread(fd, 64, 0))
            os.close(fd)
            raise WorkspaceLocked(
                f"workspace {self.path.parent} is in use by {holder}; "
                "stop that server or choose another --workspace"
            ) from None
        self._fd = fd
        self.record_owner()

    def record_owner(self) -> None:
        """Write our pid into the lock file (again after twistd forks into a daemon)."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _describe_holder(content: bytes) -> str:
    try:
        pid = int(content.decode("ascii").strip())
    except ValueError:
        return "another process"
    try:
        command = " ".join(psutil.Process(pid).cmdline()) or "?"
    except (psutil.Error, OSError):
        return f"process {pid}"
    return f"process {pid} ({command})"
