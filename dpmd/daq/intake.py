"""``QueueDaq``: validate, store, then answer — in order of arrival, idempotently.

A DAQ's place in the queue and its queue time are those of its arrival.
Validation runs off the reactor and may end out of order, so arrivals are
handed to the store in arrival order (the head waits for its validation),
and the store answers them in that order: the registry never needs sorting.

The reply is sent only once the store has the DAQ.  A specification
byte-identical to the one stored under its id is answered with success
whatever that DAQ's state (archived included): a coordinator that lost a
reply may send the request again.  A different specification under a known
id is refused.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from dpmd.blocking import RunBlocking
from dpmd.config import Config
from dpmd.daq.checks import server_problems
from dpmd.daq.journal import Journal
from dpmd.daq.lifecycle import Daq
from dpmd.daq.record import DaqRecord
from dpmd.daq.store import DIFFERENT_ARCHIVED, IDENTICAL, INSERTED, Insert, StoreError
from dpmd.logs import get_logger
from dpmd.model import DaqError, DaqReply, DaqSubState
from dpmd.spec import Specification, SpecificationError, parse_specification

log = get_logger(__name__)

S = DaqSubState

INLINE_VALIDATION = 64 * 1024
"""Specifications up to this size are validated on the reactor (a tenth of a
millisecond, less than a thread hop costs); larger ones in a thread."""


@dataclass
class _Arrival:
    seq: int
    at: float
    text: bytes
    document: Any
    reply: Deferred[DaqReply]
    outcome: Specification | Failure | None = None


class Intake:
    def __init__(
        self,
        config: Config,
        journal: Journal,
        clock: IReactorTime,
        run_blocking: RunBlocking,
        next_seq: int,
        accepted: Callable[[DaqRecord, Specification], Daq],
    ) -> None:
        self._config = config
        self._journal = journal
        self._clock = clock
        self._run_blocking = run_blocking
        self._next_seq = next_seq
        self._accepted = accepted
        self._arrivals: deque[_Arrival] = deque()

    def queue(self, document: str | dict[str, Any]) -> Deferred[DaqReply]:
        try:
            text = specification_text(document)
        except SpecificationError as error:
            return fail(DaqError(f"invalid specification: {error}", _claimed_id(document)))
        arrival = _Arrival(self._next_seq, self._clock.seconds(), text, document, Deferred())
        self._next_seq += 1
        self._arrivals.append(arrival)
        if len(text) <= INLINE_VALIDATION:
            validated = maybeDeferred(parse_specification, text)
        else:
            validated = self._run_blocking(parse_specification, text)
        validated.addBoth(self._validated, arrival)
        return arrival.reply

    def _validated(self, outcome: Specification | Failure, arrival: _Arrival) -> None:
        arrival.outcome = outcome
        while self._arrivals and self._arrivals[0].outcome is not None:
            self._store(self._arrivals.popleft())

    def _store(self, arrival: _Arrival) -> None:
        outcome = arrival.outcome
        if isinstance(outcome, Failure):
            if outcome.check(SpecificationError):
                claimed = _claimed_id(arrival.document)
                outcome = Failure(DaqError(f"invalid specification: {outcome.value}", claimed))
            arrival.reply.errback(outcome)
            return
        assert isinstance(outcome, Specification)
        problems = server_problems(outcome, self._config)
        if problems:
            error = DaqError(f"invalid specification: {'; '.join(problems)}", outcome.id)
            arrival.reply.errback(Failure(error))
            return
        record = _first_record(outcome, arrival.seq, arrival.at)
        change = Insert(outcome.id, arrival.seq, arrival.text, record.encode(), S.Scheduled.value)
        stored: Deferred[DaqReply] = self._journal.commit(change).addCallbacks(
            self._stored, self._not_stored, callbackArgs=(record, outcome),
            errbackArgs=(outcome.id,),
        )  # fmt: skip
        stored.chainDeferred(arrival.reply)

    def _stored(self, result: str, record: DaqRecord, specification: Specification) -> DaqReply:
        daq_id = record.id
        if result == INSERTED:
            self._accepted(record, specification)
            log.info("DAQ {daq_id} queued", daq_id=daq_id)
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


def _first_record(specification: Specification, seq: int, now: float) -> DaqRecord:
    return DaqRecord(
        id=specification.id,
        file_id=specification.file_id,
        seq=seq,
        substate=S.Scheduled,
        queued_at=now,
        timestamp=now,
        message="queued",
        history=({"substate": S.Scheduled.value, "timestamp": now, "event": "queue",
                  "message": "queued"},),
        sources=tuple(
            {"name": source.source_name, "location": source.location, "local_path": "",
             "state": "pending", "bytes": 0, "mtime": None}
            for source in specification.file_sources()
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
