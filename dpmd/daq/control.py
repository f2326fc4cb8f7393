"""``AbortDaq`` and ``RetryMergeDaq``.

An abort of a ``Scheduled`` DAQ is one commit.  Of a running one it is
``Aborting``: the stage is stopped, its children get SIGTERM and then SIGKILL
after ``shutdown_timeout``, partial files are removed (the merger's
temporaries, the product, copies of sources, staging files at receivers),
and only then ``Aborted``.  Receivers that already hold the complete product
keep it (it is theirs once delivered); the final status and the reply say
which.  If a child cannot be stopped, the DAQ stays ``Aborting`` with a
``FailedOperation`` alert and the call fails, so it can be tried again.

A retry clears the failed stage's alerts and runs it again from its start;
a DAQ that shows ``WorkspaceError`` goes on from its last committed state,
as every DAQ does at start-up (``resume``).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList, inlineCallbacks
from twisted.internet.error import TimeoutError as DeferredTimeout
from twisted.python.failure import Failure

from dpmd.daq.lifecycle import STAGE_SUBSTATES, Daq, Event, IllegalRequest, settle
from dpmd.daq.observers import Observers
from dpmd.daq.queue import Scheduler
from dpmd.daq.running.host import Means
from dpmd.daq.running.pipeline import Pipeline
from dpmd.daq.running.stage_table import STAGES
from dpmd.logs import get_logger
from dpmd.model import AlertSeverity, DaqError, DaqReply, DaqSubState
from dpmd.record import DaqRecord
from dpmd.stages.merge import MERGER_TEMPORARY_GLOB
from dpmd.stages.release import remove_partial_deliveries
from dpmd.workspace import Workspace

log = get_logger(__name__)

S = DaqSubState


class Control:
    """``AbortDaq``, ``RetryMergeDaq``, and going on from a DAQ's committed state.

    Owns the aborts under way; may call the pipeline and the scheduler; announces a
    DAQ that reached its final state to ``finished``.
    """

    def __init__(self, means: Means, workspace: Workspace, pipeline: Pipeline,
                 scheduler: Scheduler, finished: Observers[Daq]) -> None:  # fmt: skip
        self._means = means
        self._workspace = workspace
        self._pipeline = pipeline
        self._scheduler = scheduler
        self._finished = finished
        self._aborts: dict[str, _SharedOutcome] = {}

    # -- going on --------------------------------------------------------------------

    def resume(self, daq: Daq) -> None:
        """Go on from the DAQ's committed state (at start-up, or after a store failure)."""
        substate = daq.substate
        if substate.is_final:
            self._finished.tell(daq)
        elif substate is S.Aborting:
            self._scheduler.occupy(daq)
            settle(self.abort_running(daq), "aborting DAQ {daq_id}", daq_id=daq.id)
        elif substate in STAGE_SUBSTATES:
            self._scheduler.occupy(daq)
            if not daq.blocked:
                self._pipeline.rerun(daq)
        elif daq.holds_slot:
            self._pipeline.start(daq)
        else:
            self._scheduler.enqueue(daq)

    # -- abort ------------------------------------------------------------------------

    def abort(self, daq: Daq) -> Deferred[DaqReply]:
        if daq.substate.is_final:
            raise IllegalRequest(
                f"DAQ '{daq.id}' is already {daq.substate.value}: there is nothing to abort",
                daq.id,
            )
        ongoing = self._aborts.get(daq.id)
        if ongoing is None:
            daq.aborting = True
            ongoing = self._aborts[daq.id] = _SharedOutcome(self._abort_now(daq))
        return ongoing.follow()

    def _abort_now(self, daq: Daq) -> Deferred[DaqReply]:
        if daq.substate is S.Scheduled:
            outcome = daq.fire(Event.ABORT, "aborted before it started").addCallback(
                lambda _: self._finished.tell(daq)
            )
        else:
            outcome = self.abort_running(daq)

        def settled(result: Any) -> Any:
            self._aborts.pop(daq.id, None)
            if isinstance(result, Failure):
                daq.aborting = daq.substate is S.Aborting
                return result
            return DaqReply(daq.id, error=bool(daq.record.released))

        return outcome.addBoth(settled)

    @inlineCallbacks
    def abort_running(self, daq: Daq) -> Any:
        """Aborting: stop the stage and its children, remove partial files, then Aborted."""
        daq.aborting = True
        if daq.substate is not S.Aborting:
            yield daq.fire(Event.ABORT, "aborting")
        self._pipeline.halt(daq)
        try:
            yield self._stop_children(daq)
            yield self._pipeline.ready(daq)
            specification = daq.specification
            assert specification is not None
            yield self._means.run_blocking(
                remove_partial_files, self._workspace.daq_dir(daq.id), daq.record,
                specification.receivers, self._means.config.release_dir,
                specification.archive_name,
            )  # fmt: skip
        except (OSError, RuntimeError) as error:
            yield daq.raise_alert("FailedOperation", "AbortDaq", AlertSeverity.Error,
                                  f"abort failed: {error}")  # fmt: skip
            raise DaqError(
                f"abort of DAQ '{daq.id}' failed: {error}; it stays Aborting, "
                "call AbortDaq again",
                daq.id,
            ) from None
        kept = daq.record.released
        message = "aborted"
        if kept:
            where = ", ".join(f"{key} ({value['path']})" for key, value in sorted(kept.items()))
            message = f"aborted; receivers that already had the product keep it: {where}"
        yield daq.clear_errors(message)
        yield daq.fire(Event.ABORTED, message)
        self._finished.tell(daq)

    @inlineCallbacks
    def _stop_children(self, daq: Daq) -> Any:
        """TERM, then KILL after ``shutdown_timeout``; fail if a child outlives both."""
        timeout = self._means.config.shutdown_timeout
        children = list(daq.children)
        ending = DeferredList([child.terminate(timeout) for child in children],
                              consumeErrors=True)  # fmt: skip
        ending.addTimeout(2 * timeout, self._means.clock)
        with contextlib.suppress(DeferredTimeout, CancelledError):
            yield ending
        stuck = ", ".join(f"{c.kind} (pid {c.pid})" for c in children if c.running)
        if stuck:
            raise RuntimeError(f"{stuck} did not end after SIGKILL")

    # -- retry ------------------------------------------------------------------------------

    def retry(self, daq: Daq) -> Deferred[None]:
        if daq.store_failure is not None:
            return self._after_store_failure(daq)
        substate = daq.substate
        if substate not in STAGE_SUBSTATES:
            raise IllegalRequest(
                f"DAQ '{daq.id}' is {substate.value}: only a DAQ blocked in Collecting, "
                "Merging or Releasing can be retried",
                daq.id,
            )
        spec = STAGES[substate]
        if self._pipeline.is_running(daq) or not spec.failed(daq.record.alerts):
            raise IllegalRequest(
                f"DAQ '{daq.id}' is {substate.value} without a {' or '.join(spec.errors)} "
                "alert: there is nothing to retry",
                daq.id,
            )
        return self._pipeline.retry(daq)

    def _after_store_failure(self, daq: Daq) -> Deferred[None]:
        """The store failed earlier: commit that it works again, then go on from the last
        committed state — and if that is a failed stage, retry it, as was asked."""
        failure = daq.store_failure
        daq.store_recovered()
        checked = daq.change("the workspace store works again; going on")

        def going_on(_: object) -> Deferred[None] | None:
            substate = daq.substate
            if substate in STAGE_SUBSTATES and STAGES[substate].failed(daq.record.alerts):
                return self._pipeline.retry(daq)
            self.resume(daq)
            return None

        def failed(reason: Failure) -> Failure:
            if daq.store_failure is None:
                daq.store_failure = failure
            return reason

        return checked.addCallbacks(going_on, failed)


def remove_partial_files(directory: Path, record: DaqRecord, receivers: Any,
                         release_dir: Path, name: str) -> None:  # fmt: skip
    """What an aborted DAQ leaves half-made (blocking): merger temporaries, the product,
    source copies, staging files at receivers that were not delivered."""
    for leftover in directory.glob(MERGER_TEMPORARY_GLOB):
        leftover.unlink(missing_ok=True)
    if record.product:
        Path(record.product).unlink(missing_ok=True)
    shutil.rmtree(directory / "sources", ignore_errors=True)
    remove_partial_deliveries(receivers, release_dir, name, record.deliveries, record.id)


class _SharedOutcome:
    """One result for many waiters: every ``AbortDaq`` of a DAQ gets the same answer."""

    def __init__(self, outcome: Deferred[Any]) -> None:
        self._result: Any = None
        self._done = False
        self._waiters: list[Deferred[Any]] = []
        outcome.addBoth(self._finished)

    def _finished(self, result: Any) -> None:
        self._done, self._result = True, result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._fire(waiter)

    def _fire(self, waiter: Deferred[Any]) -> None:
        if isinstance(self._result, Failure):
            waiter.errback(self._result)
        else:
            waiter.callback(self._result)

    def follow(self) -> Deferred[Any]:
        waiter: Deferred[Any] = Deferred()
        if self._done:
            self._fire(waiter)
        else:
            self._waiters.append(waiter)
        return waiter
