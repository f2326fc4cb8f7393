"""The stall watchdog: no child of a stage may be silent for ever.

Every child a stage runs is watched: its output (progress lines, rsync's
meter, the merger's heartbeats) is its sign of life.  Silent for the stall
budget, the DAQ gets the Warning alert ``StageStalled`` naming the child, its
pid and how long it has been silent; the alert clears itself when the child
speaks again.  Silent for the kill budget, the child is stopped (SIGCONT so
that a stopped child can take SIGTERM, then SIGKILL after ``shutdown_timeout``)
and the stage fails with an Error alert saying it stalled; ``RetryMergeDaq``
runs it again.  A child stopped with SIGSTOP is found the same way.

Both budgets grow with the DAQ's input (``watchdog.stall`` and
``watchdog.kill`` are floors, plus the time ``watchdog.rate`` bytes per second
would take to write the input), because a large product's final ``fsync``
is long and silent.  The check is one timer per child, moved only when it
fires: work per output line is an assignment.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dpmd.daq.lifecycle import settle
from dpmd.logs import get_logger
from dpmd.workers import ChildProcess

log = get_logger(__name__)

STAGE_STALLED = "StageStalled"
LEEWAY = 0.001
"""Seconds of tolerance in the budgets (and the shortest wait between two checks)."""


class Watchdog:
    """Watches one child of a stage: ``StageStalled`` after ``stall`` seconds of silence,
    stopped (TERM, then KILL after ``grace``) after ``kill``."""

    def __init__(
        self,
        child: ChildProcess,
        clock: IReactorTime,
        stall: float,
        kill: float,
        grace: float,
        raise_stalled: Callable[[str], Deferred[None]],
        clear_stalled: Callable[[], Deferred[None]],
    ) -> None:
        self._child = child
        self._clock = clock
        self._stall, self._kill = stall, kill
        self._grace = grace
        self._raise, self._clear = raise_stalled, clear_stalled
        self._heard_at = clock.seconds()
        self._alerted = False
        self._call: IDelayedCall | None = clock.callLater(stall, self._check)
        child.listeners.append(self._heard)
        child.wait().addCallback(lambda _: self._ended())

    def _heard(self) -> None:
        self._heard_at = self._clock.seconds()
        if self._alerted:
            self._alerted = False
            settle(self._clear(), "clearing StageStalled")

    def _check(self) -> None:
        self._call = None
        if not self._child.running:
            return
        self._child.sample_memory()  # a silent child's memory is seen at each check too
        # A millisecond's leeway: times near 1e9 s are not exact to the microsecond.
        silent = self._clock.seconds() - self._heard_at + LEEWAY
        if silent >= self._kill:
            self._stop(silent)
            return
        if silent >= self._stall and not self._alerted:
            self._alerted = True
            child = self._child
            settle(self._raise(f"{child.kind} (pid {child.pid}) has been silent for "
                               f"{silent:.0f} s; it is stopped after {self._kill:.0f} s"),
                   "raising StageStalled")  # fmt: skip
        due = self._heard_at + (self._kill if silent >= self._stall else self._stall)
        delay = max(LEEWAY, due - self._clock.seconds())
        self._call = self._clock.callLater(delay, self._check)

    def _stop(self, silent: float) -> None:
        child = self._child
        log.warn("{kind} (pid {pid}) was silent for {seconds:.0f} s; stopping it",
                 kind=child.kind, pid=child.pid, seconds=silent)  # fmt: skip
        child.stalled_for = silent
        child.signal_group(signal.SIGCONT)
        child.terminate(self._grace)

    def _ended(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._alerted:
            self._alerted = False
            settle(self._clear(), "clearing StageStalled")
