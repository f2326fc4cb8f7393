"""Blocking work off the reactor thread.

``SerialExecutor`` runs calls one at a time, in the order they were made, on
one thread of its own.  The workspace writes through it: a DAQ's status
changes reach the disk in the order they happened, and the reactor never
waits for an ``fsync``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")

RunBlocking = Callable[..., "Deferred[Any]"]
"""``run(function, *args)``: call a blocking function, get a Deferred of its result."""


class SerialExecutor:
    def __init__(self, reactor: IReactorFromThreads, name: str) -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)

    def start(self) -> None:
        self._pool.start()

    def stop(self) -> None:
        """Finish the calls already queued, then end the thread (once; later calls are no-ops)."""
        if not self._pool.joined:
            self._pool.stop()

    def __call__(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._pool, function, *args)
