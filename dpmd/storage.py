"""Space on the workspace's file system: the ``/dpm/storage`` topic and its query."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from dpmd.logs import get_logger
from dpmd.model import StorageStatus
from dpmd.topics import Subscriber, TopicHub

log = get_logger(__name__)

STORAGE_TOPIC = "/dpm/storage"

RunBlocking = Callable[..., "Deferred[Any]"]


class StorageMonitor:
    """Samples ``statvfs`` of the workspace and publishes it to subscribers.

    ``statvfs`` can hang on a stale network file system, so it runs through
    ``run_blocking`` (a thread pool in the server) and never on the reactor.
    """

    def __init__(
        self,
        path: str,
        clock: IReactorTime,
        hub: TopicHub,
        interval: float,
        run_blocking: RunBlocking,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
    ) -> None:
        self._path = path
        self._clock = clock
        self._hub = hub
        self._run_blocking = run_blocking
        self._statvfs = statvfs
        self._interval = interval
        hub.add_topic(STORAGE_TOPIC, self._greet)

    def query(self) -> Deferred[StorageStatus]:
        return self._run_blocking(self._statvfs, self._path).addCallback(self._to_status)

    def _to_status(self, result: os.statvfs_result) -> StorageStatus:
        return StorageStatus(
            path=self._path,
            capacity=result.f_blocks * result.f_frsize,
            free=result.f_bfree * result.f_frsize,
            available=result.f_bavail * result.f_frsize,
            timestamp=self._clock.seconds(),
        )

    def publish_sample(self) -> Deferred[None] | None:
        """One periodic sample for the subscribers (a ``TimerService`` calls it)."""
        if not self._hub.subscriber_count(STORAGE_TOPIC):
            return None
        return (
            self.query()
            .addCallback(
                lambda status: self._hub.publish(STORAGE_TOPIC, status.to_json(), "storage")
            )
            .addErrback(lambda failure: log.failure("storage sample failed", failure))
        )

    def _greet(self, subscriber: Subscriber) -> None:
        # A later turn, so the reply to Subscribe is on the wire before the first sample.
        self._clock.callLater(0, self._send_first_sample, subscriber)

    def _send_first_sample(self, subscriber: Subscriber) -> None:
        self.query().addCallback(
            lambda status: subscriber.send_notification(STORAGE_TOPIC, status.to_json(), "storage")
        ).addErrback(lambda failure: log.failure("storage sample failed", failure))
