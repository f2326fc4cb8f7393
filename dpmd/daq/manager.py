"""The DAQ core behind the ``/daq`` interface: the façade that composes its rooms.

``start`` opens the store (``persist/``) and builds the rooms; then each command
goes to the one that does its job: ``admission/`` takes a QueueDaq in (the
intake, the vetting child, the dry run), ``queue.py`` holds the unfinished DAQs
and starts them in turn, ``running/`` runs their stages, ``control.py`` aborts,
retries and resumes, ``queries.py`` answers the status commands, ``archive.py``
files finished DAQs away.  Every DAQ commits through ``persist/committer.py``.

Control flows down: the rooms announce to observers that this façade
registers, and a DAQ's life enters this module twice — ``queue_daq`` (the
intake's ``queue`` itself, bound at start) and ``_finished``.
"""

from __future__ import annotations

from collections.abc import Callable
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
from dpmd.daq.admission.dry_run import DryRun
from dpmd.daq.admission.intake import Intake
from dpmd.daq.admission.validator import Validator
from dpmd.daq.archive import Archive
from dpmd.daq.control import Control
from dpmd.daq.lifecycle import Daq, IllegalRequest, settle
from dpmd.daq.observers import Observers
from dpmd.daq.persist.audit import Problem as AuditProblem
from dpmd.daq.persist.audit import audit, busy_of
from dpmd.daq.persist.committer import STATUS_TOPIC, Committer
from dpmd.daq.persist.journal import Journal
from dpmd.daq.persist.recovery import recover
from dpmd.daq.persist.store import FILE_NAME, FolderRemoved, StoreError
from dpmd.daq.queries import Queries
from dpmd.daq.queue import Registry, Scheduler
from dpmd.daq.running.host import Means
from dpmd.daq.running.pipeline import Pipeline
from dpmd.encoding import PreEncoded
from dpmd.logs import get_logger
from dpmd.model import DaqError, DaqReply
from dpmd.record import DaqRecord
from dpmd.spec import prepare_checks
from dpmd.stages.transfer import part_name
from dpmd.storage import StorageMonitor
from dpmd.topics import TopicHub
from dpmd.workers import ProcessRunner
from dpmd.workspace import Workspace

log = get_logger(__name__)


class DaqManager:
    """The façade of the DAQ core: builds its rooms at ``start``, hands each command to
    the room that does it, and files away each DAQ the rooms announce finished.

    Owns the registry of unfinished DAQs and the means the stages share; registers
    the ``/daq/status`` topic at once, so that clients may subscribe before ``start``.
    """

    queue_daq: Callable[[str | dict[str, Any]], Deferred[DaqReply]]
    """``QueueDaq``: the intake's own ``queue`` (bound at ``start``; no hop through here)."""

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
        """Recover from the store (blocking: the reactor does not run yet), build the
        rooms, and let every recovered DAQ go on from its committed state."""
        recovered = recover(self._workspace)
        self.journal = Journal(recovered.writer, recovered.reader, self._run_writer,
                               self._run_reader)  # fmt: skip
        self.committer = Committer(self.journal, self._hub, self._clock)
        finished: Observers[Daq] = Observers()
        finished.add(self._finished)
        self.pipeline = Pipeline(self.means, self._workspace, self.journal, finished,
                                 self._storage)  # fmt: skip
        self.committer.refused.add(self.pipeline.halt)
        self.scheduler = Scheduler(self._config.limits.daq, self._clock, self.pipeline.start)
        self.control = Control(self.means, self._workspace, self.pipeline, self.scheduler,
                               finished)  # fmt: skip
        self.validator = Validator(self.means.runner, self._config)
        self.intake = Intake(self._config, self.journal, self._clock, self.validator,
                             recovered.next_seq, self.committer, self.registry,
                             self.scheduler)  # fmt: skip
        self.queue_daq = self.intake.queue
        self.archive = Archive(self.means, self._workspace, self.journal)
        self.dry_run = DryRun(self.means, self.means.runner, self._storage, self.journal)
        self.queries = Queries(self.registry, self.journal, self._workspace, self.archive.folder)
        for record in recovered.records:
            daq = self.committer.daq(record)
            self.registry.add(daq)
            self.control.resume(daq)
        log.info("store recovered: {count} DAQ(s) not yet archived", count=len(self.registry))
        settle(self._tidy_leftovers(), "tidying the workspace")

    def prepare_admission(self) -> None:
        """Start the vetting child now, not at the first request that needs it, so that
        the burst that often follows a start finds it ready; and compile the schema
        that judges a refused specification (``prepare_checks``)."""
        prepare_checks()
        self.validator.start()

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

    def get_daq_status(self, daq_id: str) -> Any:
        """``GetDaqStatus``: from memory for an unfinished DAQ, else from the store."""
        return self.queries.status(daq_id)

    def get_active_daqs(self) -> PreEncoded:
        """``GetActiveDaqs``: every unfinished DAQ's status, oldest first."""
        return self.queries.active()

    def get_internal_daq_status(self, daq_id: str) -> Any:
        """``GetInternalDaqStatus``, archived DAQs included."""
        return self.queries.internal(daq_id)

    def audit_workspace(self, repair: bool) -> Deferred[dict[str, Any]]:
        """Check the store and the files against each other (``/dpm/AuditWorkspace``)."""
        daqs = list(self.registry)
        waiting = frozenset(daq.id for daq in daqs
                            if daq.blocked and not self.pipeline.is_running(daq))  # fmt: skip
        busy = busy_of([daq.newest for daq in daqs], part_name, waiting)
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
        """``CheckDaq``: the dry run of a whole DAQ; nothing is queued or written."""
        return self.dry_run.check(specification)

    def get_timeline(self, since: float | None, until: float | None,
                     limit: int) -> Deferred[dict[str, Any]]:  # fmt: skip
        """``GetTimeline``: the DAQs of a time window and their stage runs."""
        return self.queries.timeline(since, until, limit)

    def get_daq_provenance(self, daq_id: str) -> Deferred[PreEncoded]:
        """``GetDaqProvenance``: where each card of the product's header came from."""
        return self.queries.provenance(daq_id)

    def abort_daq(self, daq_id: str) -> Deferred[DaqReply]:
        """``AbortDaq``: answered once the DAQ is ``Aborted``."""
        return self._on_active(daq_id, self.control.abort, "abort")

    def retry_merge_daq(self, daq_id: str) -> Deferred[None]:
        """``RetryMergeDaq``: answered as soon as the blocked DAQ is unblocked."""
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

    # -- what the rooms announce ------------------------------------------------------------

    def _finished(self, daq: Daq) -> None:
        """Its final record is committed (and archived): file its folder away."""
        self.registry.remove(daq)
        self.scheduler.release(daq)
        self.pipeline.reserve.forget(daq)
        self.archive.file_away(daq)

    # -- at start-up -------------------------------------------------------------------------

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
