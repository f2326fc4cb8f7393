"""The journal: group commit of every change to the store, off the reactor.

Callers on the reactor hand in changes (a new DAQ, a DAQ's new record) and
get a Deferred that fires once the change is on disk.  One writer thread
commits: while it is busy, the changes that arrive wait, and the next
transaction takes all of them at once, so twenty clients queueing at the same
time cost one ``fsync``, not twenty.  That transaction starts as soon as the
one before it is on disk, while the reactor answers the callers of that one,
each in the order its change was made.  A failed transaction fails every
caller in it with ``StoreError`` and leaves nothing of it in the store.

Look-ups of DAQs that are not in memory (archived ones, the specification
of a DAQ about to start) go through a reader thread with a connection of
its own; WAL lets it read while the writer writes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.python.failure import Failure

from dpmd.blocking import RunBlocking
from dpmd.daq.persist.store import Change, Store, StoredDaq, StoreError
from dpmd.logs import get_logger

log = get_logger(__name__)

_Batch = list[tuple[Change, Deferred[Any]]]
"""Changes for one transaction, each with the Deferred of its caller."""


class Journal:
    """The store as the reactor sees it: group commit on the writer thread, look-ups on
    the reader thread, every caller answered in the order its change was made."""

    def __init__(self, writer: Store, reader: Store, run_writer: RunBlocking,
                 run_reader: RunBlocking) -> None:  # fmt: skip
        self._writer = writer
        self._reader = reader
        self._run_writer = run_writer
        self._run_reader = run_reader
        self._waiting: _Batch = []
        self._committing = False
        self._done: deque[tuple[Sequence[Any] | Failure, _Batch]] = deque()
        """Transactions over whose callers are still to be answered, oldest first."""
        self._answering = False
        self._holding = 0
        self._after_batch: list[Callable[[], None]] = []
        self._stopped: Deferred[None] | None = None
        self.batches = 0
        """Transactions committed so far (for the internal status and the tests)."""

    def commit(self, change: Change) -> Deferred[Any]:
        """Fires with the change's outcome once it is on disk, or fails with ``StoreError``."""
        waiter: Deferred[Any] = Deferred()
        self._waiting.append((change, waiter))
        self._next_batch()
        return waiter

    def after_each_batch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the callers of each transaction have been answered."""
        self._after_batch.append(callback)

    @contextmanager
    def together(self) -> Iterator[None]:
        """The changes handed in within go to the writer together, as one transaction
        (one after the other, the first would start one alone and the rest wait)."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            self._next_batch()

    def find(self, daq_id: str) -> Deferred[StoredDaq | None]:
        return self._run_reader(self._reader.find, daq_id)

    def specification(self, daq_id: str) -> Deferred[bytes]:
        return self._run_reader(self._reader.specification, daq_id)

    def finished_between(self, since: float, until: float, limit: int) -> Deferred[list[str]]:
        return self._run_reader(self._reader.finished_between, since, until, limit)

    def provenance(self, daq_id: str) -> Deferred[str | None]:
        return self._run_reader(self._reader.provenance, daq_id)

    def expired(self, finished_before: float, limit: int) -> Deferred[list[str]]:
        return self._run_reader(self._reader.expired, finished_before, limit)

    def close(self) -> Deferred[None]:
        """Close each store on its own thread, after every call already handed to it.

        Closing a connection from the reactor while its thread is inside a query
        is a use after free in SQLite's Python binding (a crash, not an error):
        the close must be the thread's last call.
        """
        closed = [self._run_writer(self._writer.close), self._run_reader(self._reader.close)]
        return gatherResults(closed, consumeErrors=True).addCallback(lambda _: None)

    @property
    def idle(self) -> bool:
        return not self._committing and not self._waiting and not self._done

    def drain(self) -> Deferred[None]:
        """Fires once every change handed in so far is committed (or has failed)."""
        if self.idle:
            done: Deferred[None] = Deferred()
            done.callback(None)
            return done
        if self._stopped is None:
            self._stopped = Deferred()
        return self._stopped

    def _next_batch(self) -> None:
        if self._committing or self._holding or not self._waiting:
            return
        batch, self._waiting = self._waiting, []
        self._committing = True
        changes = [change for change, _ in batch]
        self._run_writer(self._writer.commit, changes).addBoth(self._committed, batch)

    def _committed(self, outcome: Sequence[Any] | Failure, batch: _Batch) -> None:
        # The changes that waited go to the writer before this batch's callers are
        # answered: the disk works on them while the reactor answers.  What the
        # callers commit in reply waits for the transaction after.  Callers are
        # answered in commit order, even when a transaction is done before the
        # callers of the one before it are (a writer that does not use a thread).
        self._committing = False
        self._done.append((outcome, batch))
        if self._answering:
            self._next_batch()
            return
        self._answering = True
        self._next_batch()
        while self._done:
            self._answer(*self._done.popleft())
        self._answering = False
        self._next_batch()
        if self._stopped is not None and self.idle:
            stopped, self._stopped = self._stopped, None
            stopped.callback(None)

    def _answer(self, outcome: Sequence[Any] | Failure, batch: _Batch) -> None:
        if isinstance(outcome, Failure):
            reason = (
                outcome.value
                if outcome.check(StoreError)
                else StoreError(outcome.getErrorMessage())
            )
            if not outcome.check(StoreError):
                log.failure("the store's writer failed", outcome)
            log.error("store commit of {count} change(s) failed: {reason}", count=len(batch),
                      reason=str(reason))  # fmt: skip
            for _, waiter in batch:
                waiter.errback(Failure(reason))
        else:
            self.batches += 1
            for (_, waiter), result in zip(batch, outcome, strict=True):
                waiter.callback(result)
        for callback in self._after_batch:
            callback()
