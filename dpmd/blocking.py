"""Blocking work off the reactor thread.

``SerialExecutor`` runs calls one at a time, in the order they were made, on
one thread of its own.  The store writes through it: changes reach the disk
in the order they were made, and the reactor never waits for an ``fsync``.

It is one thread and a queue rather than a one-thread ``ThreadPool``: every
``QueueDaq`` crosses to the writer and back, and the pool's coordinator,
context copying and worker recycling cost more than the crossing itself
(``bench/core.py`` measures the whole request).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

T = TypeVar("T")

RunBlocking = Callable[..., "Deferred[Any]"]
"""``run(function, *args)``: call a blocking function, get a Deferred of its result."""

_Call = tuple[Callable[..., Any], tuple[Any, ...], "Deferred[Any]"]


class SerialExecutor:
    """One thread of its own that runs blocking calls in order, each answered on the reactor."""

    def __init__(self, reactor: IReactorFromThreads, name: str) -> None:
        self._reactor = reactor
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self) -> None:
        """Start the thread; calls made before it wait for it."""
        self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the calls already queued, then end the thread (once; later calls are no-ops)."""
        if self._stopped:
            return
        self._stopped = True
        self._calls.put(None)
        if self._thread is not None:
            self._thread.join()

    def __call__(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        if self._stopped:
            raise RuntimeError(f"{self._name} has stopped: {function!r} cannot run")
        result: Deferred[T] = Deferred()
        self._calls.put((function, args, result))
        return result

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            function, args, result = call
            try:
                outcome = function(*args)
            except BaseException:
                outcome = Failure()
            self._reactor.callFromThread(_fire, result, outcome)


def _fire(result: Deferred[Any], outcome: Any) -> None:
    if isinstance(outcome, Failure):
        result.errback(outcome)
    else:
        result.callback(outcome)
