"""Storage queries from a fresh sample, single flight, without a thread hop per query."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dpmd.model import StorageStatus
from dpmd.rpc.dispatch import Dispatcher
from dpmd.storage import STORAGE_TOPIC, StorageMonitor
from dpmd.testing import connect_session, written_messages
from dpmd.topics import TopicHub


class ThreadStandIn:
    """A ``run_blocking`` whose calls finish when the test says so."""

    def __init__(self) -> None:
        self.calls: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

    def __call__(self, function: Any, *args: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.calls.append((done, function, args))
        return done

    def finish(self) -> None:
        done, function, args = self.calls.pop(0)
        try:
            result = function(*args)
        except OSError as error:
            done.errback(error)
        else:
            done.callback(result)


def fake_statvfs(path: str) -> os.statvfs_result:
    return os.statvfs_result((4096, 1024, 1000, 600, 500, 0, 0, 0, 0, 255))


class StorageStatusTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.threads = ThreadStandIn()
        self.hub = TopicHub()
        self.statvfs_calls = 0

        def statvfs(path: str) -> os.statvfs_result:
            self.statvfs_calls += 1
            if path == "/gone":
                raise OSError(5, "Input/output error")
            return fake_statvfs(path)

        self.statvfs = statvfs
        self.monitor = StorageMonitor(
            "/ws", self.clock, self.hub, self.threads, statvfs, max_age=1.0
        )

    def test_one_sample_in_flight_serves_every_query(self) -> None:
        waiting = [self.monitor.status() for _ in range(3)]
        self.assertEqual(len(self.threads.calls), 1)
        self.threads.finish()
        results = [self.successResultOf(deferred) for deferred in waiting]  # type: ignore[arg-type]
        self.assertEqual({result.free for result in results}, {614400})
        self.assertEqual(self.statvfs_calls, 1)

    def test_a_fresh_sample_is_answered_at_once_without_a_deferred(self) -> None:
        self.monitor.status()
        self.threads.finish()
        self.clock.advance(1.0)
        status = self.monitor.status()
        self.assertIsInstance(status, StorageStatus)
        self.assertEqual(self.threads.calls, [])

    def test_the_encoded_status_is_encoded_once_per_sample(self) -> None:
        waiting = self.monitor.encoded()
        self.threads.finish()
        first = self.successResultOf(waiting)  # type: ignore[arg-type]
        self.assertEqual(json.loads(first.json)["free"], 614400)
        self.assertIs(self.monitor.encoded(), first)
        self.clock.advance(2)
        self.monitor.encoded()
        self.threads.finish()
        self.assertIsNot(self.monitor.encoded(), first)

    def test_an_older_sample_is_taken_again(self) -> None:
        self.monitor.status()
        self.threads.finish()
        self.clock.advance(1.5)
        self.assertIsInstance(self.monitor.status(), Deferred)
        self.threads.finish()
        status = self.monitor.status()
        assert isinstance(status, StorageStatus)
        self.assertEqual(status.timestamp, 1001.5)

    def test_a_failed_sample_fails_its_waiters_and_the_next_query_tries_again(self) -> None:
        monitor = StorageMonitor("/gone", self.clock, TopicHub(), self.threads, self.statvfs)
        waiting = [monitor.query(), monitor.query()]
        self.threads.finish()
        for deferred in waiting:
            self.failureResultOf(deferred, OSError)
        monitor.query()
        self.assertEqual(len(self.threads.calls), 1)

    def test_publish_sample_publishes_to_subscribers_only(self) -> None:
        self.assertIsNone(self.monitor.publish_sample())
        self.assertEqual(self.threads.calls, [])
        session, transport = connect_session(Dispatcher({}), self.hub)
        self.hub.subscribe(STORAGE_TOPIC, session)
        self.clock.advance(0)  # the greeting's sample
        self.threads.finish()
        [greeting] = written_messages(transport)
        self.assertEqual(greeting["method"], STORAGE_TOPIC)
        self.clock.advance(60)
        self.monitor.publish_sample()
        self.threads.finish()
        [tick] = written_messages(transport)
        self.assertEqual(tick["params"]["timestamp"], 1060.0)
