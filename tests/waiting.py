"""Waiting in tests for the event itself (a file, a log line, a state), never for a time.

A fixed sleep is both too long on a quiet machine and too short on a loaded
one.  These helpers look again every few milliseconds until the event has
happened, and fail at a deadline saying what never came: a slow machine makes
a test slower, not wrong.

Two kinds, by what the test's reactor is doing meanwhile:

* ``wait_*`` return a Deferred and poll with ``deferLater``, for trial's
  asynchronous tests: the reactor keeps running (and serving the in-process
  server the test is waiting on);
* ``block_*`` block the calling thread, for tests that drive child processes
  (a ``twistd`` of their own) with the reactor idle; given the ``process``,
  they fail at once when it ends first, with what it wrote on stderr.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater

T = TypeVar("T")

DEADLINE = 30.0
"""Seconds before a wait gives up: far beyond what any event here takes."""

INTERVAL = 0.01
"""Seconds between two looks."""


def wait_until(
    condition: Callable[[], T], what: str, seconds: float = DEADLINE, interval: float = INTERVAL
) -> Deferred[T]:
    """Fires with ``condition()``'s first true value; fails naming ``what`` at the deadline."""
    return ensureDeferred(_poll(condition, what, seconds, interval))


async def _poll(condition: Callable[[], T], what: str, seconds: float, interval: float) -> T:
    # Imported here: a program that only blocks (``tests.torture serve``) lets twistd
    # install the reactor.
    from twisted.internet import reactor

    deadline = time.monotonic() + seconds
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        await deferLater(reactor, interval, lambda: None)
    return value


def block_until(
    condition: Callable[[], T],
    what: str,
    seconds: float = DEADLINE,
    interval: float = INTERVAL,
    process: subprocess.Popen[Any] | None = None,
) -> T:
    """``condition()``'s first true value, looked for with the reactor idle.

    Fails naming ``what`` at the deadline, or as soon as ``process`` (if given) has ended.
    """
    deadline = time.monotonic() + seconds
    while True:
        gone = process is not None and process.poll() is not None  # before the last look
        if value := condition():
            return value
        if gone:
            assert process is not None
            raise AssertionError(f"{what}: the process ended first ({ended(process)})")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        time.sleep(interval)


def block_for_file(
    path: Path, process: subprocess.Popen[Any] | None = None, seconds: float = DEADLINE
) -> None:
    """Until ``path`` exists."""
    block_until(path.exists, f"{path} to appear", seconds, process=process)


def block_for_line(
    path: Path, text: str, process: subprocess.Popen[Any] | None = None,
    seconds: float = DEADLINE,
) -> str:  # fmt: skip
    """The first line of the file at ``path`` (a log) that holds ``text``, once one does."""

    def line() -> str | None:
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return next((line for line in lines if text in line), None)

    found = block_until(line, f"a line with {text!r} in {path}", seconds, process=process)
    assert found is not None
    return found


def ended(process: subprocess.Popen[Any]) -> str:
    """How an ended child ended: its status and, if it was piped, the end of its stderr."""
    try:
        _, err = process.communicate(timeout=5)
    except (subprocess.TimeoutExpired, ValueError):  # a grandchild holds the pipe; or it is read
        err = None
    if isinstance(err, bytes):
        err = err.decode(errors="replace")
    return f"status {process.returncode}" + (f", stderr: {err[-2000:].strip()}" if err else "")
