"""Running a DAQ's stages: start, run, end, fail, halt.

A DAQ that leaves ``Scheduled`` gets its specification from the store and
its folder in the workspace; then each stage runs on a later reactor turn
than the commit that entered it.  A stage's end is one commit: the
transition with the stage's result (``STAGES`` says which field) and its
bookkeeping.  A stage that fails raises its Error alerts and the DAQ waits
where it is; one that fails because the store could not commit is halted
(its children stopped), the DAQ showing ``WorkspaceError``.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure

from dpmd.daq.lifecycle import STAGE_SUBSTATES, Daq, Event, settle
from dpmd.daq.observers import Observers, StageEnded
from dpmd.daq.persist.journal import Journal
from dpmd.daq.persist.store import StoreError
from dpmd.daq.running.host import Means, StageContext
from dpmd.daq.running.reserve import StorageReserve
from dpmd.daq.running.stage_table import FIRST_STAGE, NEXT_STAGE, STAGES, StageSpec, begin, end
from dpmd.logs import get_logger
from dpmd.model import AlertSeverity, DaqSubState
from dpmd.spec import parse_specification
from dpmd.stages import Problem, StageError
from dpmd.storage import StorageMonitor
from dpmd.workspace import Workspace

log = get_logger(__name__)

S = DaqSubState
INTERNAL = "internal"
WAITING = object()
"""What a stage run that never started ends with: the storage reserve holds it."""


class Pipeline:
    """Runs the stages of the DAQs past ``Scheduled``: one run at a time per DAQ.

    Owns the runs in flight and the storage reserve; reads specifications through
    the journal; announces each stage run's end (``stage_ended``) and each DAQ that
    reached its final state (``finished``, an observer hub it is given).
    """

    def __init__(self, means: Means, workspace: Workspace, journal: Journal,
                 finished: Observers[Daq], storage: StorageMonitor) -> None:  # fmt: skip
        self._means = means
        self._workspace = workspace
        self._journal = journal
        self._finished = finished
        self.reserve = StorageReserve(storage, means.clock, self.later)
        self.stage_ended: Observers[StageEnded] = Observers()
        self._running: dict[str, Deferred[Any]] = {}
        self.stopping = False

    def is_running(self, daq: Daq) -> bool:
        return daq.id in self._running

    # -- entering a stage ----------------------------------------------------------------

    def start(self, daq: Daq) -> None:
        """A DAQ leaves ``Scheduled``: load it, enter ``Collecting``, run the stage."""
        now = self._means.clock.seconds()
        started = self.ready(daq).addCallback(
            lambda _: daq.fire(Event.START, "collecting sources",
                               stages=begin(daq.newest.stages, FIRST_STAGE.name, now))
        ).addCallback(lambda _: self.later(daq))  # fmt: skip
        settle(started, "starting DAQ {daq_id}", daq_id=daq.id)

    def ready(self, daq: Daq) -> Deferred[None]:
        """Its folder made and its specification parsed (once per start of the server)."""
        if daq.folder_ready:
            return succeed(None)

        def loaded(text: bytes) -> Deferred[None]:
            return self._means.run_blocking(self._load, daq, text)

        return self._journal.specification(daq.id).addCallback(loaded)

    def _load(self, daq: Daq, text: bytes) -> None:
        if daq.specification is None:
            daq.specification = parse_specification(text)
        self._workspace.prepare_daq(daq.id, text)
        daq.folder_ready = True

    def later(self, daq: Daq) -> None:
        """Run the DAQ's stage on the next reactor turn (after the commit's publication)."""
        self._means.clock.callLater(0, self.run_stage, daq)

    def run_stage(self, daq: Daq) -> None:
        substate = daq.substate
        if (self.stopping or daq.id in self._running or substate not in STAGE_SUBSTATES
                or daq.blocked or daq.aborting):  # fmt: skip
            return
        spec = STAGES[substate]
        directory = self._workspace.daq_dir(daq.id)
        linked = self._workspace.linked_dir(daq.id)
        host = StageContext(daq, self._means, directory, linked, spec.name, self._journal)
        call = (
            self.ready(daq)
            .addCallback(lambda _: self.reserve.admit(daq))
            .addCallback(lambda admitted: spec.run(host) if admitted else WAITING)
        )
        self._running[daq.id] = call
        call.addBoth(self._ended, daq, spec, host)

    # -- leaving it ------------------------------------------------------------------------

    def _ended(self, outcome: Any, daq: Daq, spec: StageSpec, host: StageContext) -> None:
        self._running.pop(daq.id, None)
        if outcome is WAITING:
            return  # for space: the reserve runs it again once there is
        if self.stopping or daq.aborting or daq.substate is not spec.substate:
            if isinstance(outcome, Failure) and not outcome.check(CancelledError, StoreError):
                log.failure("DAQ {daq_id}: {stage} ended after it was stopped", outcome,
                            daq_id=daq.id, stage=spec.name)  # fmt: skip
            return
        if isinstance(outcome, Failure):
            self._failed(outcome, daq, spec, host)
            return
        now = self._means.clock.seconds()
        stages = end(daq.newest.stages, spec.name, now, peak_rss=host.peak_rss)
        following = NEXT_STAGE.get(spec.substate)
        if following is not None:
            stages = begin(stages, following.name, now)
        moved = daq.fire(spec.done, spec.done_message, spec.history_note(outcome),
                         stages=stages, **spec.result_fields(outcome))  # fmt: skip
        moved.addCallback(lambda _: self._tell(daq, spec, stages[spec.name], True))
        moved.addCallback(lambda _: self._after(daq))
        settle(moved, "DAQ {daq_id}: the end of {stage}", daq_id=daq.id, stage=spec.name)

    def _tell(self, daq: Daq, spec: StageSpec, run: dict[str, Any], succeeded: bool,
              terminal: bool = False) -> None:  # fmt: skip
        started, ended = run.get("started_at"), run.get("ended_at")
        seconds = float(ended - started) if started is not None and ended is not None else 0.0
        self.stage_ended.tell(StageEnded(daq.id, spec.name, succeeded, seconds,
                                       int(run.get("attempts", 1)),
                                       daq.newest.stage_bytes(spec.name), terminal))  # fmt: skip

    def _after(self, daq: Daq) -> None:
        if daq.substate.is_final:
            self._finished.tell(daq)
        else:
            self.later(daq)

    def _failed(self, failure: Failure, daq: Daq, spec: StageSpec, host: StageContext) -> None:
        if failure.check(CancelledError, StoreError):
            return  # stopped on purpose, or the DAQ shows the store's failure already
        recollect: tuple[str, ...] = ()
        if failure.check(StageError):
            problems = failure.value.problems
            recollect = failure.value.recollect
        else:
            incident = uuid.uuid4().hex[:12]
            log.failure("DAQ {daq_id}: {stage} failed (incident {incident})", failure,
                        daq_id=daq.id, stage=spec.name, incident=incident)  # fmt: skip
            problems = [Problem(INTERNAL, f"{spec.name} failed unexpectedly (incident "
                                          f"{incident}; the log has the details)")]  # fmt: skip
        now = self._means.clock.seconds()
        last = "; ".join(problem.description for problem in problems)
        stages = end(daq.newest.stages, spec.name, now, error=last, peak_rss=host.peak_rss)
        attempts = int(stages[spec.name].get("attempts", 1))
        daq.progress = None  # it waits for a retry now, not for the stage
        for number, problem in enumerate(problems):
            log.warn("DAQ {daq_id}: {problem}", daq_id=daq.id, problem=problem.description)
            fields: dict[str, Any] = {}
            if number == 0:
                fields["stages"] = stages
                if recollect:
                    fields["recollect"] = recollect
            category = problem.category or spec.error_category
            raised = daq.raise_alert(category, problem.key, AlertSeverity.Error,
                                     problem.description, problem.terminal, attempts, **fields)
            settle(raised, "DAQ {daq_id}: alert", daq_id=daq.id)
        terminal = any(problem.terminal for problem in problems)
        self._tell(daq, spec, stages[spec.name], False, terminal)

    # -- stopping ------------------------------------------------------------------------

    def halt(self, daq: Daq) -> None:
        """Stop the DAQ's stage and its children now (abort, store failure, shutdown)."""
        call = self._running.pop(daq.id, None)
        if call is not None:
            call.cancel()
        for child in list(daq.children):
            child.terminate(self._means.config.shutdown_timeout)

    def retry(self, daq: Daq) -> Deferred[None]:
        """Clear the stage's alerts and run it again (``RetryMergeDaq``); a merge that
        failed for a source's sake goes back to collect the sources it names."""
        spec = STAGES[daq.substate]
        now = self._means.clock.seconds()
        if spec.substate is S.Merging and daq.newest.recollect:
            return self._recollect(daq, spec, now)
        message = f"retrying {spec.name}"
        log.info("DAQ {daq_id}: {message}", daq_id=daq.id, message=message)
        cleared = daq.clear_alerts(spec.alerts, message,
                                   stages=begin(daq.newest.stages, spec.name, now))  # fmt: skip
        return cleared.addCallback(lambda _: self.later(daq))

    def _recollect(self, daq: Daq, merging: StageSpec, now: float) -> Deferred[None]:
        """Back to ``Collecting`` for the sources the failed merge named: the retry takes
        them as they are now (their new checksums replace the old, which the history and
        the source's entry keep)."""
        names = daq.newest.recollect
        message = f"retrying: collecting {', '.join(names)} again, then merging"
        log.info("DAQ {daq_id}: {message}", daq_id=daq.id, message=message)
        alerts = tuple(a for a in daq.newest.alerts if a.category not in merging.alerts)
        moved = daq.fire(Event.RECOLLECT, message, alerts=alerts,
                         stages=begin(daq.newest.stages, FIRST_STAGE.name, now))  # fmt: skip
        return moved.addCallback(lambda _: self.later(daq))

    def rerun(self, daq: Daq) -> None:
        """After a restart: the interrupted stage runs again from its start."""
        spec = STAGES[daq.substate]
        log.info("DAQ {daq_id}: {stage} was interrupted; running it again", daq_id=daq.id,
                 stage=spec.name)  # fmt: skip
        now = self._means.clock.seconds()
        noted = daq.change(f"{spec.name} again after a restart",
                           stages=begin(daq.newest.stages, spec.name, now))  # fmt: skip
        noted.addCallback(lambda _: self.later(daq))
        settle(noted, "DAQ {daq_id}: resuming", daq_id=daq.id)

    def stop_all(self) -> None:
        """Server shutdown: no stage starts or ends any more; the DAQs resume next time."""
        self.stopping = True
        running, self._running = self._running, {}
        for call in running.values():
            call.cancel()
