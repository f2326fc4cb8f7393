"""The DAQ core behind the ``/daq`` interface: a façade over its rooms.

``start`` recovers from the store; then each command goes to the room that
does its job: ``Intake`` (QueueDaq), ``Queries`` (the status commands),
``Control`` (abort and retry), ``Pipeline`` (the stages), ``Scheduler``
(which DAQ starts next), ``Archive`` (finished DAQs, retention).  What they
share is here: the registry of unfinished DAQs and ``_commit``, the one
place where a DAQ's change goes to the store and, once committed, to the
``/daq/status`` topic.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    gatherResults,
    maybeDeferred,
)
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from dpmd.blocking import RunBlocking
from dpmd.config import Config
from dpmd.daq.archive import Archive
from dpmd.daq.audit import Problem as AuditProblem
from dpmd.daq.audit import audit, busy_of
from dpmd.daq.chains import settle
from dpmd.daq.check import DryRun
from dpmd.daq.control import Control
from dpmd.daq.host import Means
from dpmd.daq.intake import Intake
from dpmd.daq.journal import Journal
from dpmd.daq.lifecycle import STAGE_SUBSTATES, Daq, IllegalRequest
from dpmd.daq.pipeline import Pipeline
from dpmd.daq.queries import Queries
from dpmd.daq.record import DaqRecord
from dpmd.daq.recovery import recover
from dpmd.daq.registry import Registry
from dpmd.daq.scheduler import Scheduler
from dpmd.daq.store import FILE_NAME, FolderRemoved, StoreError, Update
from dpmd.daq.validator import Validator
from dpmd.encoding import PreEncoded
from dpmd.logs import get_logger
from dpmd.model import DaqError, DaqReply, DaqSubState
from dpmd.stages.transfer import part_name
from dpmd.storage import StorageMonitor
from dpmd.topics import TopicHub
from dpmd.workers import ProcessRunner
from dpmd.workspace import Workspace

log = get_logger(__name__)

STATUS_TOPIC = "/daq/status"
S = DaqSubState


class DaqManager:
    def __init__(self, config: Config, workspace: Workspace, hub: TopicHub,
                 clock: IReactorTime, runner: ProcessRunner, run_writer: RunBlocking,
                 run_reader: RunBlocking, run_blocking: RunBlocking,
                 storage: StorageMonitor) -> None:  # fmt: skip
        self._config = config
        self._workspace = workspace
        self._hub = hub
        self._clock = clock
        self._run_writer = run_writer
        self._run_reader = run_reader
        self._storage = storage
        self.means = Means(config, clock, runner, run_blocking,
                           DeferredSemaphore(config.limits.merge),
                           DeferredSemaphore(config.limits.transfer))  # fmt: skip
        self.registry = Registry()
        hub.add_topic(STATUS_TOPIC)

    # -- start and stop -----------------------------------------------------------------

    def start(self) -> None:
        """Recover from the store (blocking: the reactor does not run yet) and resume."""
        recovered = recover(self._workspace)
        self.journal = Journal(recovered.writer, recovered.reader, self._run_writer,
                               self._run_reader)  # fmt: skip
        self.scheduler = Scheduler(self._config.limits.daq, self._clock, self._start)
        self.pipeline = Pipeline(self.means, self._workspace, self.journal, self._finished,
                                 self._storage)  # fmt: skip
        self.control = Control(self.means, self._workspace, self.pipeline, self._finished,
                               self._resume)  # fmt: skip
        self.validator = Validator(self.means.runner, self._config)
        self.intake = Intake(self._config, self.journal, self._clock, self.validator.vet,
                             recovered.next_seq, self._accepted)  # fmt: skip
        self.archive = Archive(self.means, self._workspace, self.journal)
        self.dry_run = DryRun(self.means, self.means.runner, self._storage, self.journal)
        self.queries = Queries(self.registry, self.journal, self._workspace, self.archive.folder)
        for record in recovered.records:
            daq = self._daq(record)
            self.registry.add(daq)
            self._resume(daq)
        log.info("store recovered: {count} DAQ(s) not yet archived", count=len(self.registry))
        settle(self._tidy_leftovers(), "tidying the workspace")

    def stop(self) -> Deferred[None]:
        """Stop every child (bounded by ``shutdown_timeout``), then let the store settle.

        DAQs keep their committed state and resume on the next start.  The
        queued DAQs that wait for their log line get it.
        """
        self.scheduler.stop()
        self.pipeline.stop_all()
        self.validator.stop()
        timeout = self._config.shutdown_timeout
        children = [child.terminate(timeout) for child in list(self.means.runner.running)]
        ending: Deferred[Any] = DeferredList(children, consumeErrors=True)
        ending.addTimeout(2 * timeout, self._clock)
        ending.addErrback(lambda _: log.warn("children still running at shutdown"))
        drained = ending.addCallback(lambda _: self.journal.drain())
        drained.addTimeout(timeout, self._clock)
        drained.addErrback(lambda _: log.warn("the store did not settle at shutdown"))
        return drained.addCallback(lambda _: self.intake.log_waiting())

    def close(self) -> Deferred[None]:
        """Close the store, each connection on its own thread once its calls are done."""
        return self.journal.close()

    # -- the interface ---------------------------------------------------------------------

    def queue_daq(self, specification: str | dict[str, Any]) -> Deferred[DaqReply]:
        return self.intake.queue(specification)

    def get_daq_status(self, daq_id: str) -> Any:
        return self.queries.status(daq_id)

    def get_active_daqs(self) -> PreEncoded:
        return self.queries.active()

    def get_internal_daq_status(self, daq_id: str) -> Any:
        return self.queries.internal(daq_id)

    def audit_workspace(self, repair: bool) -> Deferred[dict[str, Any]]:
        """Check the store and the files against each other (``/dpm/AuditWorkspace``)."""
        busy = busy_of([daq.newest for daq in self.registry], part_name)
        config = self._config
        roots = [config.release_dir, *config.release_allowed]

        def done(found: tuple[list[AuditProblem], list[FolderRemoved]]) -> Deferred[Any]:
            problems, changes = found
            recorded = gatherResults([self.journal.commit(change) for change in changes])
            return recorded.addCallback(
                lambda _: {"problems": [problem.to_json() for problem in problems]}
            )

        return self.means.run_blocking(
            audit, self._workspace.root / FILE_NAME, self._workspace, roots, busy, repair
        ).addCallback(done)

    def check_daq(self, specification: str | dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.dry_run.check(specification)

    def get_timeline(self, since: float | None, until: float | None,
                     limit: int) -> Deferred[dict[str, Any]]:  # fmt: skip
        return self.queries.timeline(since, until, limit)

    def get_daq_provenance(self, daq_id: str) -> Deferred[PreEncoded]:
        return self.queries.provenance(daq_id)

    def abort_daq(self, daq_id: str) -> Deferred[DaqReply]:
        return self._on_active(daq_id, self.control.abort, "abort")

    def retry_merge_daq(self, daq_id: str) -> Deferred[None]:
        return self._on_active(daq_id, self.control.retry, "retry")

    def _on_active(self, daq_id: str, command: Any, verb: str) -> Deferred[Any]:
        """Run a command on an unfinished DAQ; refuse it, naming why, for any other id."""
        daq = self.registry.get(daq_id)
        if daq is not None:
            return maybeDeferred(command, daq).addErrback(_store_refusal, daq_id)

        def finished(found: tuple[DaqRecord, Any]) -> None:
            substate = found[0].substate.value
            raise IllegalRequest(f"DAQ '{daq_id}' is {substate} and archived: there is "
                                 f"nothing to {verb}", daq_id)  # fmt: skip

        return self.queries.stored(daq_id).addCallback(finished)

    # -- what the rooms share ----------------------------------------------------------------

    def _daq(self, record: DaqRecord) -> Daq:
        return Daq(record, self._clock, self._commit)

    def _accepted(self, record: DaqRecord) -> Daq:
        daq = self._daq(record)
        self.registry.add(daq)
        self._publish(daq)
        self.scheduler.enqueue(daq)
        return daq

    def _commit(self, daq: Daq, record: DaqRecord) -> Deferred[None]:
        """Commit, then publish — always.  A refusal of the store is the DAQ's alert."""
        change = Update(daq.id, record.encode(), record.substate.value, record.finished_at,
                        archived=record.substate.is_final)  # fmt: skip

        def committed(_: Any) -> None:
            daq.committed(record)
            self._publish(daq)

        def refused(failure: Failure) -> Failure:
            failure.trap(StoreError)
            log.error("DAQ {daq_id}: the store refused a change: {reason}", daq_id=daq.id,
                      reason=str(failure.value))  # fmt: skip
            daq.not_committed(str(failure.value))
            self.pipeline.halt(daq)
            self._publish(daq)
            return failure

        return self.journal.commit(change).addCallbacks(committed, refused)

    def _publish(self, daq: Daq) -> None:
        # With nobody subscribed nothing is encoded: a status call encodes the
        # status when it asks (once per change, either way).
        if self._hub.subscriber_count(STATUS_TOPIC):
            self._hub.publish(STATUS_TOPIC, daq.encoded_status(), daq.id)

    def _start(self, daq: Daq) -> None:
        self.pipeline.start(daq)

    def _resume(self, daq: Daq) -> None:
        """Go on from the DAQ's committed state (at start-up, or after a store failure)."""
        substate = daq.substate
        if substate.is_final:
            self._finished(daq)
        elif substate is S.Aborting:
            self.scheduler.occupy(daq)
            settle(self.control.abort_running(daq), "aborting DAQ {daq_id}", daq_id=daq.id)
        elif substate in STAGE_SUBSTATES:
            self.scheduler.occupy(daq)
            if not daq.blocked:
                self.pipeline.rerun(daq)
        elif daq.holds_slot:
            self.pipeline.start(daq)
        else:
            self.scheduler.enqueue(daq)

    def _finished(self, daq: Daq) -> None:
        """Its final record is committed (and archived): file its folder away."""
        self.registry.remove(daq)
        self.scheduler.release(daq)
        self.pipeline.reserve.forget(daq)
        self.archive.file_away(daq)

    def _tidy_leftovers(self) -> Deferred[None]:
        """Folders in ``daqs/`` of no unfinished DAQ: archive them, or remove them."""

        def tidy(names: list[str]) -> Deferred[Any]:
            return gatherResults([self._tidy_one(name) for name in names], consumeErrors=True)

        return self.means.run_blocking(self._workspace.leftovers, self.registry.ids()).addCallback(
            tidy
        )

    def _tidy_one(self, name: str) -> Deferred[None]:
        folder = self._workspace.daq_dir(name)

        def decide(stored: Any) -> Deferred[Any]:
            if stored is None or not stored.archived:
                log.info("removing {name}: a left-over folder of no DAQ", name=name)
                return self.means.run_blocking(self._workspace.remove_leftover, name)
            try:
                product = DaqRecord.decode(stored.record).product
            except (ValueError, KeyError, TypeError):
                return self.means.run_blocking(self._workspace.set_aside, folder)
            return self.means.run_blocking(self._workspace.file_away, name, product)

        return self.journal.find(name).addCallback(decide)


def _store_refusal(failure: Failure, daq_id: str) -> None:
    """A command the store could not record is refused as a ``DaqException``."""
    failure.trap(StoreError)
    raise DaqError(f"the workspace store could not record it: {failure.value}", daq_id)
