"""The record store and its journal: group commit, all-or-nothing batches, indexed look-ups."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dpmd.blocking import SerialExecutor
from dpmd.daq.persist.journal import Journal
from dpmd.daq.persist.store import (
    DIFFERENT,
    DIFFERENT_ARCHIVED,
    IDENTICAL,
    INSERTED,
    FolderRemoved,
    Insert,
    Store,
    StoreError,
    Update,
)
from dpmd.testing import synchronous


def insert(daq_id: str, seq: int, spec: bytes = b"{}") -> Insert:
    return Insert(daq_id, seq, spec, f'{{"id": "{daq_id}"}}', "Scheduled")


class HeldWriter:
    """A writer thread the test lets run one transaction at a time."""

    def __init__(self) -> None:
        self.pending: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

    def __call__(self, function: Any, *args: Any) -> Deferred[Any]:
        waiter: Deferred[Any] = Deferred()
        self.pending.append((waiter, function, args))
        return waiter

    def run_next(self) -> None:
        waiter, function, args = self.pending.pop(0)
        try:
            result = function(*args)
        except Exception:
            waiter.errback(Failure())
        else:
            waiter.callback(result)


class StoreTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp()).absolute()
        root.mkdir()
        self.path = root / "dpmd.sqlite3"
        self.store = Store(self.path)
        self.addCleanup(self.store.close)
        self.assertTrue(self.store.create_schema())
        self.reader = Store(self.path)
        self.addCleanup(self.reader.close)


class StoreTests(StoreTestCase):
    def test_a_second_start_finds_the_schema(self) -> None:
        self.assertFalse(Store(self.path).create_schema())

    def test_insert_outcomes(self) -> None:
        self.assertEqual(self.store.commit([insert("A", 1, b"spec")]), [INSERTED])
        self.assertEqual(self.store.commit([insert("A", 2, b"spec")]), [IDENTICAL])
        self.assertEqual(self.store.commit([insert("A", 3, b"other")]), [DIFFERENT])
        self.store.commit([Update("A", '{"id": "A"}', "Completed", 5.0, archived=True)])
        self.assertEqual(self.store.commit([insert("A", 4, b"other")]), [DIFFERENT_ARCHIVED])
        self.assertEqual(self.store.commit([insert("A", 5, b"spec")]), [IDENTICAL])

    def test_one_batch_gives_each_insert_its_own_outcome_in_order(self) -> None:
        """New DAQs side by side go in as one statement; a known id among them (a resend,
        the same id twice in the batch) still gets the outcome it would get alone."""
        self.store.commit([insert("OLD", 1, b"old")])
        outcomes = self.store.commit([
            insert("A", 2, b"a"), insert("OLD", 3, b"old"), insert("B", 4, b"b"),
            insert("A", 5, b"a"), insert("B", 6, b"changed"), insert("OLD", 7, b"new"),
            Update("A", '{"id": "A", "n": 1}', "Collecting"), insert("C", 8, b"c"),
        ])  # fmt: skip
        self.assertEqual(outcomes, [INSERTED, IDENTICAL, INSERTED, IDENTICAL, DIFFERENT,
                                    DIFFERENT, None, INSERTED])  # fmt: skip
        found = self.reader.find("A")
        assert found is not None
        self.assertEqual((found.seq, found.record), (2, '{"id": "A", "n": 1}'))
        self.assertEqual([row[1] for row in self.store.unfinished()], ["OLD", "A", "B", "C"])

    def test_many_new_daqs_in_one_batch(self) -> None:
        """More new DAQs than one statement takes (the parameter limit) still all go in."""
        outcomes = self.store.commit([insert(f"N.{n}", n + 1) for n in range(450)])
        self.assertEqual(outcomes, [INSERTED] * 450)
        self.assertEqual(len(self.store.unfinished()), 450)

    def test_a_failed_batch_leaves_nothing_of_itself(self) -> None:
        self.store.commit([insert("A", 1)])
        # B is fine on its own; C reuses A's queue number, which the store refuses.
        error = self.assertRaises(StoreError, self.store.commit, [insert("B", 2), insert("C", 1)])
        self.assertIn("UNIQUE", str(error))
        self.assertIsNone(self.reader.find("B"))
        self.assertEqual(self.store.commit([insert("B", 2)]), [INSERTED])

    def test_archived_daqs_are_not_unfinished_but_are_found(self) -> None:
        self.store.commit([insert("A", 1), insert("B", 2), insert("C", 3)])
        self.store.commit([Update("B", '{"id": "B"}', "Completed", 10.0, archived=True)])
        self.assertEqual([row[1] for row in self.store.unfinished()], ["A", "C"])
        found = self.reader.find("B")
        assert found is not None
        self.assertEqual((found.seq, found.archived, found.folder_removed), (2, True, False))
        self.assertIsNone(self.reader.find("NOPE"))
        self.assertEqual(self.store.next_seq(), 4)

    def test_expired_lists_the_oldest_archived_folders_first(self) -> None:
        self.store.commit([insert(f"D.{n}", n) for n in range(1, 5)])
        self.store.commit([Update(f"D.{n}", "{}", "Completed", float(10 - n), archived=True)
                           for n in (1, 2, 3)])  # fmt: skip
        self.assertEqual(self.reader.expired(9.5, 10), ["D.3", "D.2", "D.1"])
        self.assertEqual(self.reader.expired(8.5, 1), ["D.3"])
        self.store.commit([FolderRemoved("D.3")])
        self.assertEqual(self.reader.expired(9.5, 10), ["D.2", "D.1"])

    def test_the_query_plans_use_the_indexes(self) -> None:
        """Start-up and look-ups read an index, never the whole history."""
        db = self.store._db
        plans = {
            "SELECT seq, id, record FROM daq WHERE archived = 0 ORDER BY seq": "daq_unfinished",
            "SELECT seq FROM daq WHERE id = 'X'": "sqlite_autoindex_daq_1",
            # Both partial indexes of finish times serve it; SQLite picks one.
            "SELECT id FROM daq WHERE archived = 1 AND folder_removed = 0 AND finished_at < 1"
            " ORDER BY finished_at LIMIT 5": ("daq_retention", "daq_finished"),
        }
        for query, indexes in plans.items():
            plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}"))
            with self.subTest(query):
                names = (indexes,) if isinstance(indexes, str) else indexes
                self.assertTrue(any(f"INDEX {name}" in plan for name in names), plan)


class JournalTests(StoreTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.writer = HeldWriter()
        self.journal = Journal(self.store, self.reader, self.writer, synchronous)

    def test_changes_waiting_for_the_writer_are_committed_together(self) -> None:
        first = self.journal.commit(insert("A", 1))
        waiting = [self.journal.commit(insert(name, seq)) for seq, name in ((2, "B"), (3, "C"))]
        self.assertEqual(len(self.writer.pending), 1, "one transaction at a time")
        self.writer.run_next()
        self.assertEqual(self.successResultOf(first), INSERTED)
        for deferred in waiting:
            self.assertNoResult(deferred)
        self.assertEqual(len(self.writer.pending), 1)
        [(_, _, (changes,))] = self.writer.pending
        self.assertEqual([change.daq_id for change in changes], ["B", "C"])
        self.writer.run_next()
        self.assertEqual([self.successResultOf(d) for d in waiting], [INSERTED, INSERTED])
        self.assertEqual(self.journal.batches, 2)

    def test_a_failed_transaction_fails_every_caller_in_it(self) -> None:
        self.successResultOf(Journal(self.store, self.reader, synchronous,
                                     synchronous).commit(insert("A", 1)))  # fmt: skip
        self.journal.commit(insert("X", 9))
        batch = [self.journal.commit(insert("B", 2)), self.journal.commit(insert("C", 1))]
        self.writer.run_next()
        self.writer.run_next()
        for deferred in batch:
            self.failureResultOf(deferred, StoreError)
        self.assertIsNone(self.reader.find("B"))
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_the_next_batch_is_on_its_way_before_callers_are_answered(self) -> None:
        """The disk works on what waited while the reactor answers; what the callers
        commit in reply waits for the transaction after."""
        first = self.journal.commit(insert("A", 1))
        seen_when_answered: list[list[str]] = []

        def answered(_: object) -> Deferred[object]:
            seen_when_answered.extend(
                [change.daq_id for change in changes] for _, _, (changes,) in self.writer.pending
            )
            return self.journal.commit(insert("A2", 10))

        first.addCallback(answered)
        self.journal.commit(insert("B", 2))
        self.writer.run_next()  # A alone; B waited
        self.assertEqual(seen_when_answered, [["B"]])
        self.writer.run_next()
        [(_, _, (changes,))] = self.writer.pending
        self.assertEqual([change.daq_id for change in changes], ["A2"])
        self.writer.run_next()
        self.assertEqual(self.successResultOf(first), INSERTED)

    def test_callers_are_answered_in_commit_order_when_the_writer_does_not_wait(self) -> None:
        """A transaction done at once (no thread) is still answered after the one before:
        a change made in reply is answered after the rest of the batch it replies to."""
        answered: list[str] = []

        def reply(_: object) -> None:
            answered.append("A")
            self.journal.commit(insert("A2", 10)).addCallback(lambda _: answered.append("A2"))

        self.journal.commit(insert("X", 1))
        self.journal.commit(insert("A", 2)).addCallback(reply)
        self.journal.commit(insert("B", 3)).addCallback(lambda _: answered.append("B"))
        self.writer.run_next()  # X; A and B go to the writer together
        self.journal._run_writer = synchronous  # A2's transaction is done at once
        self.writer.run_next()
        self.assertEqual(answered, ["A", "B", "A2"])

    def test_changes_handed_in_together_go_in_one_transaction(self) -> None:
        with self.journal.together():
            waiting = [self.journal.commit(insert(name, seq)) for seq, name in enumerate("ABC")]
            self.assertEqual(self.writer.pending, [], "nothing starts inside")
        [(_, _, (changes,))] = self.writer.pending
        self.assertEqual([change.daq_id for change in changes], ["A", "B", "C"])
        self.writer.run_next()
        self.assertEqual([self.successResultOf(d) for d in waiting], [INSERTED] * 3)

    def test_drain_waits_for_what_was_handed_in(self) -> None:
        self.journal.commit(insert("A", 1))
        drained = self.journal.drain()
        self.assertNoResult(drained)
        self.writer.run_next()
        self.successResultOf(drained)
        self.successResultOf(self.journal.drain())


class RealThreadTests(TestCase):
    """The journal on real threads: group commit, and a close that waits for them."""

    def stores(self) -> tuple[Store, Store]:
        """A new store's writer and reader connections."""
        root = Path(self.mktemp()).absolute()
        root.mkdir()
        store, reader = Store(root / "s.sqlite3"), Store(root / "s.sqlite3")
        store.create_schema()
        return store, reader

    def thread(self, name: str) -> SerialExecutor:
        executor = SerialExecutor(reactor, name)
        executor.start()
        self.addCleanup(executor.stop)
        return executor

    @inlineCallbacks
    def test_group_commit_on_the_writer_thread(self) -> None:
        store, reader = self.stores()
        self.addCleanup(store.close)
        self.addCleanup(reader.close)
        journal = Journal(store, reader, self.thread("test-writer"), synchronous)
        outcomes = yield gatherResults(
            [journal.commit(insert(f"T.{n}", n)) for n in range(1, 21)]
        )
        self.assertEqual(outcomes, [INSERTED] * 20)
        self.assertLessEqual(journal.batches, 2)
        self.assertEqual(len(store.unfinished()), 20)

    @inlineCallbacks
    def test_close_waits_for_the_calls_each_thread_already_has(self) -> Any:
        store, reader = self.stores()
        reading = self.thread("test-reader")
        journal = Journal(store, reader, self.thread("test-writer"), reading)
        yield journal.commit(insert("C.1", 1))
        busy, release = threading.Event(), threading.Event()
        self.addCleanup(release.set)  # before the thread's stop, should the test fail
        reading(lambda: (busy.set(), release.wait(30)))
        found = journal.find("C.1")
        self.assertTrue(busy.wait(30), "the reader thread never took its first call")
        closed = journal.close()  # asked for while the reader is busy and a find waits
        self.assertNoResult(closed)
        release.set()
        yield closed
        self.assertEqual((yield found).daq_id, "C.1")
        with self.assertRaises(sqlite3.ProgrammingError):
            reader.find("C.1")
