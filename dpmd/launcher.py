"""The ``twistd`` that launched a daemon, as the daemon sees it: how to tell it a start failed.

In its default daemon mode twistd forks before the services start.  The
process that ran ``twistd`` (the launcher) waits on a status pipe for the
daemon's word; on anything but success it prints ``An error has occurred:
b'…'`` — the ``repr`` of the first 100 bytes of the exception's line — and
"Please look at log file", then exits with status 1.  That protocol has no
way to carry readable text, and its reader cannot be changed without patching
twistd's private runner.

So dpmd speaks to the launcher itself.  Before the fork (``makeService``
runs in the launcher) ``Launcher.here`` keeps a copy of the launcher's stderr
and a handle on the launcher process (``psutil.Process``, which refuses to
signal a process whose pid was reused), and gives the launcher a handler that
ends it with status 1 on ``SIGUSR2``.  A daemon whose start fails writes its
one line to that stderr and sends ``SIGUSR2`` before it exits: the launcher
ends at once, with status 1, having printed dpmd's line and nothing else.
The daemon gives ``SIGUSR2`` back its former meaning as soon as it runs.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import psutil

from dpmd.logs import get_logger

log = get_logger(__name__)

FAILED = signal.SIGUSR2
"""What the daemon sends the launcher when its start failed: the launcher exits with 1."""


def _exit_failed(signum: int, frame: Any) -> None:
    os._exit(1)  # dpmd's line is written; twistd has nothing to add


class Launcher:
    """The launching ``twistd``: its stderr and the way to end it, kept across the fork."""

    def __init__(self, stderr: int, process: psutil.Process, previous: Any) -> None:
        self._stderr: int | None = stderr
        self._process = process
        self._previous = previous

    @classmethod
    def here(cls) -> Launcher:
        """Called in the launcher, before twistd forks."""
        stderr = os.dup(2)  # not inherited by the daemon's children (os.dup's default)
        previous = signal.signal(FAILED, _exit_failed)
        return cls(stderr, psutil.Process(), previous)

    def forked(self) -> None:
        """Called first thing in the daemon: ``SIGUSR2`` is the daemon's own again."""
        signal.signal(FAILED, self._previous)

    def fail(self, line: str) -> None:
        """Write ``line`` to the launcher's stderr, then end the launcher with status 1."""
        if self._stderr is None:
            return
        os.write(self._stderr, f"{line}\n".encode(errors="replace"))
        self.forget()
        try:
            self._process.send_signal(FAILED)
        except psutil.Error as error:  # it was ended meanwhile: nobody waits for the word
            log.warn("the launching twistd is gone: {reason}", reason=str(error))

    def forget(self) -> None:
        """Once started (or failed), keep no descriptor of the launcher's terminal open."""
        if self._stderr is not None:
            os.close(self._stderr)
            self._stderr = None
