"""``QueueDaq``: validate, store, then answer — in order of arrival, idempotently.

A DAQ's place in the queue and its queue time are those of its arrival. An
arrival that finds nothing ahead of it (no other arrival, no commit in flight)
is checked at once on the reactor: that is the quickest answer, and the
coordinator's usual pace. When arrivals come faster than commits, the vetting
child checks them on the other core while the reactor goes on answering
(``dpmd.daq.admission.validator``); so do specifications too big to check on
the reactor. While the child is not ready (just after a start), the reactor
checks those it would have sent it, but the big ones. Arrivals are handed to
the store in arrival order (the head waits for its check), and the store
answers them in that order: the registry never needs sorting. The child's
answers of one turn of the reactor go to the store together, as one
transaction, and the DAQs queued within a tenth of a second share one log line
(``QueuedLog``).

The reply is sent only once the store has the DAQ.  A specification
byte-identical to the one stored under its id is answered with success
whatever that DAQ's state (archived included): a coordinator that lost a
reply may send the request again.  A different specification under a known
id is refused.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any, NoReturn

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from dpmd.config import Config
from dpmd.daq.admission.validator import Validator, ValidatorGone
from dpmd.daq.admission.vetting import vet
from dpmd.daq.persist.committer import Committer
from dpmd.daq.persist.journal import Journal
from dpmd.daq.persist.store import DIFFERENT_ARCHIVED, IDENTICAL, INSERTED, Insert, StoreError
from dpmd.daq.queue import Registry, Scheduler
from dpmd.logs import get_logger
from dpmd.model import DaqError, DaqReply, DaqSubState
from dpmd.record import DaqRecord
from dpmd.spec import SpecificationError

log = get_logger(__name__)

S = DaqSubState

INLINE_VALIDATION = 64 * 1024
"""Specifications up to this size may be checked on the reactor (a tenth of a
millisecond); larger ones always go to the vetting child."""


@dataclass
class _Arrival:
    seq: int
    at: float
    text: bytes
    document: Any
    reply: Deferred[DaqReply]
    outcome: dict[str, Any] | Failure | None = None


class Intake:
    """``QueueDaq``: checks each arrival, commits it, puts it in the queue, answers.

    Owns the arrivals not yet answered and the queued log line; may call the
    vetting (here or in its child), the journal, the committer (which makes the new
    ``Daq`` and publishes it), the registry and the scheduler.
    """

    def __init__(self, config: Config, journal: Journal, clock: IReactorTime,
                 validator: Validator, next_seq: int, committer: Committer,
                 registry: Registry, scheduler: Scheduler) -> None:  # fmt: skip
        self._config = config
        self._journal = journal
        self._clock = clock
        self._validator = validator
        self._next_seq = next_seq
        self._committer = committer
        self._registry = registry
        self._scheduler = scheduler
        self._arrivals: deque[_Arrival] = deque()
        self._queued_log = QueuedLog(clock)
        journal.after_each_batch(self._queued_log.write_full_lines)
        self._store_due = False

    def queue(self, document: str | dict[str, Any]) -> Deferred[DaqReply]:
        try:
            text = specification_text(document)
        except SpecificationError as error:
            return fail(DaqError(f"invalid specification: {error}", _claimed_id(document)))
        arrival = _Arrival(self._next_seq, self._clock.seconds(), text, document, Deferred())
        self._next_seq += 1
        ahead = bool(self._arrivals) or not self._journal.idle
        self._arrivals.append(arrival)
        if len(text) <= INLINE_VALIDATION and not (ahead and self._validator.ready):
            if ahead:
                self._validator.start()  # for the rest of the burst (if it is not running)
            try:
                outcome: dict[str, Any] | Failure = vet(text, self._config)
            except Exception:
                outcome = Failure()
            arrival.outcome = outcome
            self._store_ready()
        else:
            self._validator.vet(text).addBoth(self._checked_by_child, arrival)
        return arrival.reply

    def log_waiting(self) -> None:
        """Write the log lines of the queued DAQs that wait for theirs (at stop)."""
        self._queued_log.flush()

    def _checked_by_child(self, outcome: dict[str, Any] | Failure, arrival: _Arrival) -> None:
        # The child's answers come several a read: handed to the store at the end of
        # this turn of the reactor, they go in one transaction, where the first
        # would otherwise start one alone and the rest wait for it.
        arrival.outcome = outcome
        if not self._store_due:
            self._store_due = True
            self._clock.callLater(0, self._store_ready)

    def _store_ready(self) -> None:
        """Hand the arrivals at the head that have been checked to the store, in order."""
        self._store_due = False
        with self._journal.together():
            while self._arrivals and self._arrivals[0].outcome is not None:
                self._store(self._arrivals.popleft())

    def _store(self, arrival: _Arrival) -> None:
        outcome = arrival.outcome
        if isinstance(outcome, Failure):
            if outcome.check(ValidatorGone):
                reason = f"cannot check the specification: {outcome.value}; send it again"
                outcome = Failure(DaqError(reason, _claimed_id(arrival.document)))
            arrival.reply.errback(outcome)
            return
        assert isinstance(outcome, dict)
        if "refused" in outcome:
            claimed = outcome.get("id") or _claimed_id(arrival.document)
            arrival.reply.errback(Failure(DaqError(outcome["refused"], claimed)))
            return
        record = _first_record(outcome, arrival.seq, arrival.at)
        encoded = record.encode()
        change = Insert(record.id, arrival.seq, arrival.text, encoded, S.Scheduled.value)
        stored: Deferred[DaqReply] = self._journal.commit(change).addCallbacks(
            self._stored, self._not_stored, callbackArgs=(record, encoded),
            errbackArgs=(record.id,),
        )  # fmt: skip
        stored.chainDeferred(arrival.reply)

    def _stored(self, result: str, record: DaqRecord, encoded: str) -> DaqReply:
        daq_id = record.id
        if result == INSERTED:
            daq = self._committer.daq(record)
            self._registry.add(daq)
            self._committer.publish(daq)
            daq.keep_encoded(encoded)  # it may wait long: as one string, not a record's objects
            self._scheduler.enqueue(daq)
            self._queued_log.add(daq_id)
        elif result == IDENTICAL:
            log.info("DAQ {daq_id} was queued again with the same specification", daq_id=daq_id)
        else:
            where = "archived" if result == DIFFERENT_ARCHIVED else "queued"
            raise DaqError(
                f"DAQ id '{daq_id}' was already {where} with a different specification", daq_id
            )
        return DaqReply(daq_id)

    def _not_stored(self, failure: Failure, daq_id: str) -> NoReturn:
        failure.trap(StoreError)
        raise DaqError(f"cannot store DAQ '{daq_id}' in the workspace: {failure.value}", daq_id)


def _first_record(vetted: dict[str, Any], seq: int, now: float) -> DaqRecord:
    return DaqRecord(
        id=vetted["id"],
        file_id=vetted["file_id"],
        seq=seq,
        substate=S.Scheduled,
        queued_at=now,
        timestamp=now,
        message="queued",
        history=({"substate": S.Scheduled.value, "timestamp": now, "event": "queue",
                  "message": "queued"},),
        sources=tuple(
            {"name": name, "location": location, "local_path": "",
             "state": "pending", "bytes": 0, "mtime": None}
            for name, location in vetted["sources"]
        ),
    )  # fmt: skip


def specification_text(document: str | dict[str, Any]) -> bytes:
    """The specification as the bytes that are stored and compared (an object as
    ``json.dumps`` of it); ``SpecificationError`` when it has no such form."""
    try:
        if isinstance(document, str):
            return document.encode()
        return json.dumps(document, allow_nan=False).encode()
    except UnicodeEncodeError:
        reason = "holds a character that cannot be encoded as UTF-8 (a lone surrogate)"
    except RecursionError:
        reason = "is nested too deeply"
    except ValueError:
        reason = "holds a number that JSON cannot represent (NaN or infinity)"
    raise SpecificationError([f"$: the specification {reason}"])


def _claimed_id(document: Any) -> str:
    """The id an invalid specification claims, for the error's ``id`` (or ""): only a
    short, encodable one, so the refusal itself can always be sent."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except (ValueError, RecursionError):
            return ""
    claimed = document.get("id") if isinstance(document, dict) else None
    if not isinstance(claimed, str) or len(claimed) > 128:
        return ""
    try:
        claimed.encode()
    except UnicodeEncodeError:
        return ""
    return claimed


class QueuedLog:
    """One log line for the DAQs queued within a tenth of a second of one another.

    Twisted formats and writes every event on the reactor's thread: a line
    per DAQ cost a tenth to a fifth of the reactor's time at one client's
    pace, and more than the rest of a burst's QueueDaqs at twenty clients'.
    A DAQ is added once the store has it; a line is written once
    ``PER_LINE`` DAQs wait (after the answers of the transaction that made
    them so many), or ``WITHIN`` seconds after the first of them, or when
    the server stops.  A DAQ queued alone gets its own line, ``DAQ <id>
    queued`` with ``daq_id``; DAQs queued together get ``<n> DAQs queued:
    <id>, <id>, ...`` with ``daq_ids``.
    """

    PER_LINE = 20
    WITHIN = 0.1

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._ids: list[str] = []
        self._due: IDelayedCall | None = None

    def add(self, daq_id: str) -> None:
        self._ids.append(daq_id)
        if self._due is None:
            self._due = self._clock.callLater(self.WITHIN, self.flush)

    def write_full_lines(self) -> None:
        """Log ``PER_LINE`` DAQs a line while that many wait (after each transaction)."""
        full = len(self._ids) - len(self._ids) % self.PER_LINE
        self._write(self._ids[:full])
        del self._ids[:full]
        if not self._ids:
            self._cancel()

    def flush(self) -> None:
        """Log every DAQ that waits (when the first has waited ``WITHIN``, and at stop)."""
        self._cancel()
        ids, self._ids = self._ids, []
        self._write(ids)

    def _cancel(self) -> None:
        if self._due is not None and self._due.active():
            self._due.cancel()
        self._due = None

    def _write(self, ids: list[str]) -> None:
        for first in range(0, len(ids), self.PER_LINE):
            line = ids[first : first + self.PER_LINE]
            if len(line) == 1:
                log.info("DAQ {daq_id} queued", daq_id=line[0])
            else:
                log.info("{count} DAQs queued: {names}", count=len(line),
                         names=", ".join(line), daq_ids=line)  # fmt: skip
