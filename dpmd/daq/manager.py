"""The DAQ manager: the durable queue, the scheduler, the status topic.

It owns every DAQ that is not archived.  ``QueueDaq`` answers only once the
DAQ's folder is durable; each change of a DAQ is written before it is
published on ``/daq/status``; the stages run on later reactor turns, within
the configured limits, in queue order.  On start the workspace is scanned
and every DAQ resumes where it was: an interrupted stage runs again from its
start, a DAQ being aborted finishes aborting, a finished one is archived.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    DeferredSemaphore,
    inlineCallbacks,
    maybeDeferred,
)
from twisted.internet.error import TimeoutError as DeferredTimeout
from twisted.python.failure import Failure

from dpmd.blocking import RunBlocking
from dpmd.config import Config
from dpmd.daq.checks import server_problems
from dpmd.daq.lifecycle import (
    STAGE_ALERTS,
    STAGE_ERROR,
    STAGES,
    Daq,
    DaqRecord,
    Event,
    IllegalRequest,
)
from dpmd.logs import get_logger
from dpmd.model import (
    AlertSeverity,
    DaqError,
    DaqReply,
    DaqStatus,
    DaqSubState,
    InternalDaqStatus,
)
from dpmd.spec import Specification, SpecificationError, parse_specification
from dpmd.stages import StageContext, StageError
from dpmd.stages.collect import collect
from dpmd.stages.merge import MERGER_TEMPORARY_GLOB, merge
from dpmd.stages.release import release, remove_partial_copies
from dpmd.topics import TopicHub
from dpmd.workers import ProcessRunner
from dpmd.workspace import DuplicateDaq, StoredDaq, Workspace

log = get_logger(__name__)

STATUS_TOPIC = "/daq/status"
S = DaqSubState

NEXT_EVENT = {
    S.Collecting: (Event.COLLECTED, "sources collected; merging"),
    S.Merging: (Event.MERGED, "product merged; releasing"),
    S.Releasing: (Event.RELEASED, "product released"),
}


class DaqManager:
    def __init__(
        self,
        config: Config,
        workspace: Workspace,
        hub: TopicHub,
        clock: Any,
        runner: ProcessRunner,
        run_serial: RunBlocking,
        run_blocking: RunBlocking,
    ) -> None:
        self._config = config
        self._workspace = workspace
        self._hub = hub
        self._clock = clock
        self._runner = runner
        self._run_serial = run_serial
        self._run_blocking = run_blocking
        self._daqs: dict[str, Daq] = {}
        self._archived: set[str] = set()
        self._arriving: set[str] = set()
        self._next_seq = 1
        self._stage_calls: dict[str, Deferred[Any]] = {}
        self._aborts: dict[str, _SharedOutcome] = {}
        self._merge_slots = DeferredSemaphore(config.limits.merge)
        self._transfer_slots = DeferredSemaphore(config.limits.transfer)
        self._stopping = False
        self._recovered: bool | Failure = False
        self._waiting_for_recovery: list[Deferred[None]] = []
        hub.add_topic(STATUS_TOPIC)

    # -- start and stop --------------------------------------------------------

    def start(self) -> Deferred[None]:
        """Scan the workspace and resume every DAQ; API calls wait for this."""
        return self._recover().addBoth(self._recovery_ended)

    def _recovery_ended(self, outcome: Any) -> None:
        if isinstance(outcome, Failure):
            log.failure("workspace recovery failed; /daq commands are refused", outcome)
            self._recovered = outcome
        else:
            self._recovered = True
        waiting, self._waiting_for_recovery = self._waiting_for_recovery, []
        for waiter in waiting:
            waiter.callback(None)

    def stop(self) -> Deferred[Any]:
        """Stop every child; DAQs keep their recorded state and resume on the next start."""
        self._stopping = True
        for call in list(self._stage_calls.values()):
            call.cancel()
        stopping = [
            child.terminate(self._config.shutdown_timeout) for child in list(self._runner.running)
        ]
        return DeferredList(stopping)

    def _when_ready(self, call: Callable[[], Any]) -> Deferred[Any]:
        """Run an API call now, or once the workspace is recovered."""
        if self._recovered is False:
            waiter: Deferred[None] = Deferred()
            self._waiting_for_recovery.append(waiter)
            return waiter.addCallback(lambda _: self._when_ready(call))
        if isinstance(self._recovered, Failure):
            reason = self._recovered.getErrorMessage()
            raise DaqError(f"the workspace could not be recovered at start-up: {reason}")
        return maybeDeferred(call)

    @inlineCallbacks
    def _recover(self) -> Any:
        self._archived = yield self._run_serial(self._workspace.prepare)
        stored, corrupt = yield self._run_serial(self._workspace.scan)
        for bad in corrupt:
            log.error(
                "DAQ folder {name} is unreadable ({reason}); moved to {moved_to}",
                name=bad.name,
                reason=bad.reason,
                moved_to=str(bad.moved_to),
            )
        for entry in sorted(stored, key=lambda entry: entry.record.get("seq", 0)):
            try:
                daq = self._restore(entry)
            except (SpecificationError, ValueError, KeyError, TypeError) as error:
                moved = yield self._run_serial(self._workspace.set_aside, entry.path)
                log.error(
                    "DAQ folder {name} cannot be restored ({reason}); moved to {moved_to}",
                    name=entry.daq_id,
                    reason=str(error),
                    moved_to=str(moved),
                )
                continue
            self._resume(daq)
        log.info("workspace recovered: {count} DAQ(s) not yet archived", count=len(self._daqs))
        self._schedule()

    def _restore(self, entry: StoredDaq) -> Daq:
        record = DaqRecord.from_json(entry.record)
        specification = parse_specification(entry.specification)
        if specification.id != record.id:
            raise ValueError(f"specification id {specification.id!r} does not match the folder")
        daq = Daq(record, specification, self._clock, self._commit)
        self._daqs[record.id] = daq
        self._next_seq = max(self._next_seq, record.seq + 1)
        return daq

    def _resume(self, daq: Daq) -> None:
        if daq.substate.is_final:
            self._later(self._archive, daq)
        elif daq.substate is S.Aborting:
            self._later(self._abort_running, daq)
        elif daq.substate in STAGES and not daq.blocked:
            log.info(
                "DAQ {daq_id}: {stage} was interrupted; running it again",
                daq_id=daq.id,
                stage=daq.substate.value,
            )
            self._later(self._run_stage, daq)

    # -- the interface ------------------------------------------------------------

    def queue_daq(self, specification: str | dict[str, Any]) -> Deferred[DaqReply]:
        return self._when_ready(lambda: self._queue(specification))

    def get_daq_status(self, daq_id: str) -> Deferred[DaqStatus]:
        return self._when_ready(lambda: self._get(daq_id).status)

    def get_active_daqs(self) -> Deferred[list[DaqStatus]]:
        return self._when_ready(lambda: [daq.status for daq in self._daqs.values()])

    def get_internal_daq_status(self, daq_id: str) -> Deferred[InternalDaqStatus]:
        return self._when_ready(lambda: self._internal_status(daq_id))

    def abort_daq(self, daq_id: str) -> Deferred[DaqReply]:
        return self._when_ready(lambda: self._abort(daq_id))

    def retry_merge_daq(self, daq_id: str) -> Deferred[None]:
        return self._when_ready(lambda: self._retry(daq_id))

    # -- queueing ---------------------------------------------------------------------

    def _queue(self, document: str | dict[str, Any]) -> Deferred[DaqReply]:
        # The place in the queue and the queue time are those of arrival, not of the end
        # of validation: requests sent one after the other are queued in that order.
        arrival = (self._next_seq, self._clock.seconds())
        self._next_seq += 1
        text = document.encode() if isinstance(document, str) else json.dumps(document).encode()
        return self._run_blocking(parse_specification, text).addCallbacks(
            lambda specification: self._store_new(specification, text, *arrival),
            self._refuse_specification,
            errbackArgs=(document,),
        )

    def _refuse_specification(self, failure: Failure, document: Any) -> Failure:
        failure.trap(SpecificationError)
        daq_id = _claimed_id(document)
        raise DaqError(f"invalid specification: {failure.value}", daq_id)

    def _store_new(
        self, specification: Specification, text: bytes, seq: int, now: float
    ) -> Deferred[DaqReply]:
        daq_id = specification.id
        problems = server_problems(specification)
        if problems:
            raise DaqError(f"invalid specification: {'; '.join(problems)}", daq_id)
        if daq_id in self._daqs or daq_id in self._archived or daq_id in self._arriving:
            where = "archived" if daq_id in self._archived else "queued"
            raise DaqError(f"DAQ id '{daq_id}' was already {where}", daq_id)
        record = DaqRecord(
            id=daq_id,
            file_id=specification.file_id,
            seq=seq,
            substate=S.Scheduled,
            queued_at=now,
            timestamp=now,
            message="queued",
            history=[{"substate": S.Scheduled.value, "timestamp": now, "event": "queue",
                      "message": "queued"}],
            sources=[
                {"name": source.source_name, "location": source.location, "local_path": "",
                 "state": "pending", "bytes": 0, "mtime": None}
                for source in specification.file_sources()
            ],
        )  # fmt: skip
        self._arriving.add(daq_id)

        def stored(_: Any) -> DaqReply:
            daq = Daq(record, specification, self._clock, self._commit)
            self._daqs[daq_id] = daq
            self._daqs = dict(sorted(self._daqs.items(), key=lambda item: item[1].record.seq))
            log.info("DAQ {daq_id} queued", daq_id=daq_id)
            self._hub.publish(STATUS_TOPIC, daq.status.to_json(), daq_id)
            self._later(self._schedule)
            return DaqReply(daq_id)

        def refused(failure: Failure) -> None:
            if failure.check(DuplicateDaq):
                raise DaqError(str(failure.value), daq_id)
            failure.trap(OSError)
            reason = failure.value.strerror or str(failure.value)
            log.error("cannot store DAQ {daq_id}: {reason}", daq_id=daq_id, reason=reason)
            raise DaqError(f"cannot store DAQ '{daq_id}' in the workspace: {reason}", daq_id)

        def forget(result: Any) -> Any:
            self._arriving.discard(daq_id)
            return result

        return (
            self._run_serial(self._workspace.create, daq_id, text, record.to_json())
            .addCallbacks(stored, refused)
            .addBoth(forget)
        )

    # -- queries ------------------------------------------------------------------------

    def _get(self, daq_id: str) -> Daq:
        daq = self._daqs.get(daq_id)
        if daq is not None:
            return daq
        if daq_id in self._archived:
            raise DaqError(f"DAQ '{daq_id}' is finished and archived", daq_id)
        raise DaqError(f"unknown DAQ id '{daq_id}'", daq_id)

    def _internal_status(self, daq_id: str) -> Any:
        daq = self._daqs.get(daq_id)
        if daq is not None:
            return InternalDaqStatus(daq.status, self._detail(daq.record, daq, archived=False))
        if daq_id not in self._archived:
            raise DaqError(f"unknown DAQ id '{daq_id}'", daq_id)

        def archived(record: dict[str, Any] | None) -> InternalDaqStatus:
            if record is None:
                raise DaqError(f"the archived record of DAQ '{daq_id}' cannot be read", daq_id)
            stored = DaqRecord.from_json(record)
            return InternalDaqStatus(stored.status(), self._detail(stored, None, archived=True))

        return self._run_blocking(self._workspace.read_archived_record, daq_id).addCallback(
            archived
        )

    def _detail(self, record: DaqRecord, daq: Daq | None, archived: bool) -> dict[str, Any]:
        folder = (
            self._workspace.archived_dir(record.id)
            if archived
            else self._workspace.daq_dir(record.id)
        )
        return {
            "queued_at": record.queued_at,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "workspace": str(folder),
            "progress": daq.progress if daq else None,
            "sources": record.sources,
            "processes": [child.describe() for child in (daq.children if daq else [])],
            "archived": archived,
            "history": record.history,
            "product": record.product,
            "released": record.released,
        }

    # -- scheduling and stages -------------------------------------------------------------

    def _later(self, function: Callable[..., Any], *args: Any) -> None:
        self._clock.callLater(0, function, *args)

    def _schedule(self) -> None:
        if self._stopping:
            return
        busy = sum(1 for daq in self._daqs.values() if daq.substate in (*STAGES, S.Aborting))
        for daq in list(self._daqs.values()):
            if busy >= self._config.limits.daq:
                break
            if daq.substate is S.Scheduled and daq.id not in self._aborts:
                busy += 1
                daq.fire(Event.START, "collecting sources").addCallback(
                    lambda _, daq=daq: self._later(self._run_stage, daq)
                )

    def _context(self, daq: Daq) -> StageContext:
        return StageContext(
            daq=daq,
            directory=self._workspace.daq_dir(daq.id),
            linked_dir=self._workspace.linked_dir(daq.id),
            config=self._config,
            runner=self._runner,
            run_blocking=self._run_blocking,
            merge_slots=self._merge_slots,
            transfer_slots=self._transfer_slots,
            clock=self._clock,
        )

    def _run_stage(self, daq: Daq) -> None:
        substate = daq.substate
        if (
            self._stopping
            or daq.id in self._stage_calls
            or substate not in STAGES
            or daq.blocked
            or daq.id in self._aborts
        ):
            return
        stage = {S.Collecting: collect, S.Merging: merge, S.Releasing: release}[substate]
        call = maybeDeferred(stage, self._context(daq))
        self._stage_calls[daq.id] = call
        call.addBoth(self._stage_ended, daq, substate)

    def _stage_ended(self, outcome: Any, daq: Daq, substate: DaqSubState) -> None:
        self._stage_calls.pop(daq.id, None)
        if self._stopping or daq.substate is not substate or daq.id in self._aborts:
            return
        if isinstance(outcome, Failure):
            self._stage_failed(outcome, daq, substate)
            return
        changes: dict[str, Any] = {}
        if substate is S.Collecting:
            changes["sources"] = outcome
        elif substate is S.Merging:
            changes["product"] = outcome
        else:
            changes["result"] = outcome
        for name, value in changes.items():
            setattr(daq.record, name, value)
        event, message = NEXT_EVENT[substate]
        daq.fire(event, message).addCallback(lambda _: self._after_stage(daq))

    def _after_stage(self, daq: Daq) -> None:
        if daq.substate.is_final:
            self._archive(daq)
        else:
            self._run_stage(daq)

    def _stage_failed(self, failure: Failure, daq: Daq, substate: DaqSubState) -> None:
        category = STAGE_ERROR[substate]
        if failure.check(StageError):
            problems = failure.value.problems
        elif failure.check(CancelledError):
            return
        else:
            log.failure("DAQ {daq_id}: {stage} failed", failure, daq_id=daq.id,
                        stage=substate.value)  # fmt: skip
            problems = [(substate.value.lower(), f"internal error: {failure.getErrorMessage()}")]
        for key, description in problems:
            log.warn("DAQ {daq_id}: {problem}", daq_id=daq.id, problem=description)
            daq.raise_alert(category, key, AlertSeverity.Error, description)

    # -- finishing ------------------------------------------------------------------------------

    @inlineCallbacks
    def _archive(self, daq: Daq) -> Any:
        """Remove what is no longer needed, move the folder to ``archive/``, free the slot."""
        try:
            yield self._run_blocking(
                _tidy_finished, self._workspace.daq_dir(daq.id), daq.record.product
            )
            yield self._run_serial(self._workspace.archive_daq, daq.id)
        except OSError as error:
            log.error("DAQ {daq_id} cannot be archived: {reason}", daq_id=daq.id,
                      reason=str(error))  # fmt: skip
            return
        self._daqs.pop(daq.id, None)
        self._archived.add(daq.id)
        log.info("DAQ {daq_id} archived ({substate})", daq_id=daq.id,
                 substate=daq.substate.value)  # fmt: skip
        self._schedule()

    # -- abort and retry ---------------------------------------------------------------------------

    def _abort(self, daq_id: str) -> Deferred[DaqReply]:
        daq = self._get(daq_id)
        if daq.substate.is_final:
            raise IllegalRequest(
                f"DAQ '{daq_id}' is already {daq.substate.value}: there is nothing to abort", daq_id
            )
        ongoing = self._aborts.get(daq_id)
        if ongoing is None:
            ongoing = self._aborts[daq_id] = _SharedOutcome(self._abort_now(daq))
        return ongoing.follow()

    def _abort_now(self, daq: Daq) -> Deferred[DaqReply]:
        if daq.substate is S.Scheduled:
            outcome = daq.fire(Event.ABORT, "aborted before it started").addCallback(
                lambda _: self._archive(daq)
            )
        else:
            outcome = self._abort_running(daq)

        def settled(result: Any) -> Any:
            self._aborts.pop(daq.id, None)
            return result

        return outcome.addCallback(lambda _: DaqReply(daq.id)).addBoth(settled)

    @inlineCallbacks
    def _abort_running(self, daq: Daq) -> Any:
        """Aborting: stop the stage and its children, remove partial files, then Aborted."""
        if daq.substate is not S.Aborting:
            yield daq.fire(Event.ABORT, "aborting")
        call = self._stage_calls.pop(daq.id, None)
        if call is not None:
            call.cancel()
        try:
            yield self._stop_children(daq)
            yield self._run_blocking(
                _remove_partial_files,
                self._workspace.daq_dir(daq.id),
                daq.record.product,
                daq.specification,
                self._config.release_dir,
            )
        except (OSError, RuntimeError) as error:
            yield daq.raise_alert("FailedOperation", "AbortDaq", AlertSeverity.Error,
                                  f"abort failed: {error}")  # fmt: skip
            raise DaqError(
                f"abort of DAQ '{daq.id}' failed: {error}; it stays Aborting, "
                "call AbortDaq again",
                daq.id,
            ) from None
        daq.record.alerts = [
            alert for alert in daq.record.alerts if alert.severity is not AlertSeverity.Error
        ]
        yield daq.fire(Event.ABORTED, "aborted")
        yield self._archive(daq)

    @inlineCallbacks
    def _stop_children(self, daq: Daq) -> Any:
        """TERM, then KILL after ``shutdown_timeout``; fail if a child outlives both."""
        timeout = self._config.shutdown_timeout
        children = list(daq.children)
        ending = DeferredList(
            [child.terminate(timeout) for child in children], consumeErrors=True
        )
        ending.addTimeout(2 * timeout, self._clock)
        with contextlib.suppress(DeferredTimeout, CancelledError):
            yield ending
        stuck = ", ".join(f"{c.kind} (pid {c.pid})" for c in children if c.running)
        if stuck:
            raise RuntimeError(f"{stuck} did not end after SIGKILL")

    def _retry(self, daq_id: str) -> Deferred[None]:
        daq = self._get(daq_id)
        substate = daq.substate
        if substate not in STAGES:
            raise IllegalRequest(
                f"DAQ '{daq_id}' is {substate.value}: only a DAQ blocked in Collecting, "
                "Merging or Releasing can be retried",
                daq_id,
            )
        category = STAGE_ERROR[substate]
        if daq_id in self._stage_calls or not any(
            alert.category == category for alert in daq.record.alerts
        ):
            raise IllegalRequest(
                f"DAQ '{daq_id}' is {substate.value} without a {category} alert: "
                "there is nothing to retry",
                daq_id,
            )
        message = f"retrying {substate.value.lower()}"
        log.info("DAQ {daq_id}: {message}", daq_id=daq_id, message=message)
        return daq.clear_alerts(STAGE_ALERTS[substate], message).addCallback(
            lambda _: self._later(self._run_stage, daq)
        )

    # -- persistence ------------------------------------------------------------------------------

    def _commit(self, daq: Daq, status: DaqStatus) -> Deferred[None]:
        """Write the record, then publish the status it had when the change was made."""
        record = daq.record.to_json()

        def published(_: Any) -> None:
            self._hub.publish(STATUS_TOPIC, status.to_json(), daq.id)

        def not_written(failure: Failure) -> None:
            log.failure("DAQ {daq_id}: status not written", failure, daq_id=daq.id)
            published(None)

        return self._run_serial(self._workspace.save_record, daq.id, record).addCallbacks(
            published, not_written
        )


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


def _claimed_id(document: Any) -> str:
    """The id an invalid specification claims, for the error's ``id`` (or "")."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return ""
    if isinstance(document, dict) and isinstance(document.get("id"), str):
        return document["id"]
    return ""


def _remove_partial_files(
    directory: Path, product: str, specification: Specification, release_dir: Path
) -> None:
    """What an aborted DAQ leaves half-made: merger temporaries, the product, copies."""
    for leftover in directory.glob(MERGER_TEMPORARY_GLOB):
        leftover.unlink(missing_ok=True)
    if product:
        Path(product).unlink(missing_ok=True)
    shutil.rmtree(directory / "sources", ignore_errors=True)
    remove_partial_copies(specification.receivers, release_dir, specification.archive_name)


def _tidy_finished(directory: Path, product: str) -> None:
    """A released product is the receivers' now (symbolic links point into ``linked/``)."""
    if product:
        Path(product).unlink(missing_ok=True)
    shutil.rmtree(directory / "sources", ignore_errors=True)
