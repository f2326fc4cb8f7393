"""Space on the workspace's file system: the ``/dpm/storage`` topic and its query.

``statvfs`` is cheap on a local file system but can hang on a stale network
one, so it runs through ``run_blocking`` (a thread pool in the server) and
never on the reactor.  A thread hop per query would cost more than the
query, so one sample serves every query for ``max_age`` seconds, and while
a sample is being taken every query waits for that one (single flight):
``status()`` answers from memory, without a Deferred, whenever it can, and
``encoded()`` gives the same as JSON text encoded once per sample.

The periodic publication is one call, ``publish_sample()``, for the server
to drive from a ``TimerService`` every ``storage_interval`` seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from dpmd.encoding import PreEncoded
from dpmd.logs import get_logger
from dpmd.model import StorageStatus
from dpmd.topics import Subscriber, TopicHub

log = get_logger(__name__)

STORAGE_TOPIC = "/dpm/storage"

RunBlocking = Callable[..., "Deferred[Any]"]


class StorageMonitor:
    """Samples ``statvfs`` of the workspace, answers queries and publishes to subscribers."""

    def __init__(
        self,
        path: str,
        clock: IReactorTime,
        hub: TopicHub,
        run_blocking: RunBlocking,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
        max_age: float = 1.0,
        reserve: int | float = 0,
    ) -> None:
        self._path = path
        self._clock = clock
        self._hub = hub
        self._run_blocking = run_blocking
        self._statvfs = statvfs
        self._max_age = max_age
        self._reserve = reserve
        self._was_low = False
        self._latest: StorageStatus | None = None
        self._encoded: PreEncoded | None = None
        self._waiting: list[Deferred[StorageStatus]] | None = None
        hub.add_topic(STORAGE_TOPIC, self._greet)

    def status(self) -> StorageStatus | Deferred[StorageStatus]:
        """A sample at most ``max_age`` old: at once if there is one, else when it is taken."""
        latest = self._latest
        if latest is not None and self._clock.seconds() - latest.timestamp <= self._max_age:
            return latest
        waiter: Deferred[StorageStatus] = Deferred()
        if self._waiting is None:
            self._waiting = [waiter]
            self._run_blocking(self._statvfs, self._path).addCallbacks(
                self._sampled, self._sample_failed
            )
        else:
            self._waiting.append(waiter)
        return waiter

    def encoded(self) -> PreEncoded | Deferred[PreEncoded]:
        """``status()`` as its JSON text, encoded once per sample, for ``QueryStorageStatus``."""
        status = self.status()
        if isinstance(status, StorageStatus):  # not ``Deferred``: an ABC, slow to test
            return self._encoded_latest()
        return status.addCallback(lambda _: self._encoded_latest())

    def _encoded_latest(self) -> PreEncoded:
        if self._encoded is None:
            assert self._latest is not None
            self._encoded = PreEncoded.of(self._latest.to_json())
        return self._encoded

    def query(self) -> Deferred[StorageStatus]:
        """``status()`` as a Deferred."""
        status = self.status()
        return status if isinstance(status, Deferred) else succeed(status)

    def publish_sample(self) -> Deferred[None] | None:
        """One periodic tick (a ``TimerService`` calls it): a fresh sample, if anyone
        listens."""
        if not self._hub.subscriber_count(STORAGE_TOPIC):
            return None
        return (
            self.query()
            .addCallback(
                lambda status: self._hub.publish(STORAGE_TOPIC, status.to_json(), "storage")
            )
            .addErrback(lambda failure: log.failure("storage sample failed", failure))
        )

    def reserve_bytes(self, status: StorageStatus) -> int:
        """The space to keep free, in bytes (``storage.reserve`` may be a share)."""
        if isinstance(self._reserve, float):
            return int(status.capacity * self._reserve)
        return self._reserve

    def low(self, status: StorageStatus) -> str | None:
        """Why the space is below the reserve, or None."""
        reserve = self.reserve_bytes(status)
        if status.available >= reserve:
            return None
        return (
            f"{status.available} bytes are free on the workspace's file system "
            f"({status.path}), below the reserve of {reserve} bytes (storage.reserve)"
        )

    def _sampled(self, result: os.statvfs_result) -> None:
        self._latest = StorageStatus(
            path=self._path,
            capacity=result.f_blocks * result.f_frsize,
            free=result.f_bfree * result.f_frsize,
            available=result.f_bavail * result.f_frsize,
            timestamp=self._clock.seconds(),
        )
        problem = self.low(self._latest)
        if problem and not self._was_low:
            log.warn("storage low: {problem}; no new stage starts", problem=problem)
        elif self._was_low and not problem:
            log.info("storage above the reserve again")
        self._was_low = problem is not None
        self._encoded = None
        waiting, self._waiting = self._waiting or [], None
        for waiter in waiting:
            waiter.callback(self._latest)

    def _sample_failed(self, failure: Failure) -> None:
        waiting, self._waiting = self._waiting or [], None
        for waiter in waiting:
            waiter.errback(failure)

    def _greet(self, subscriber: Subscriber) -> None:
        # A later turn, so the reply to Subscribe is on the wire before the first sample.
        self._clock.callLater(0, self._send_first_sample, subscriber)

    def _send_first_sample(self, subscriber: Subscriber) -> None:
        self.query().addCallback(
            lambda status: subscriber.send_notification(STORAGE_TOPIC, status.to_json(), "storage")
        ).addErrback(lambda failure: log.failure("storage sample failed", failure))
