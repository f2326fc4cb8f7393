"""One client connection as futures and callbacks, the same for Twisted and asyncio.

``Session`` sits between a connector (which owns the socket) and the typed
API (which owns the method names).  It turns the events of the sans-I/O
``ClientCore`` into resolved or rejected futures and into topic callbacks.
The futures come from a txaio API object the connector passes in, so the
same code hands out Deferreds in a Twisted program and asyncio Futures in an
asyncio one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dpmd.client.core import (
    DEFAULT_MAX_LINE_BYTES,
    Broken,
    ClientCore,
    Event,
    Failed,
    Notification,
    Response,
)
from dpmd.client.errors import ConnectionLost, ProtocolError

Future = Any
"""A ``Deferred`` under Twisted, an ``asyncio.Future`` under asyncio."""

Callback = Callable[[Any], Any]


def _unchanged(result: Any) -> Any:
    return result


class _Call:
    __slots__ = ("convert", "future", "method", "on_error")

    def __init__(
        self,
        future: Future,
        method: str,
        convert: Callable[[Any], Any],
        on_error: Callable[[], None] | None,
    ) -> None:
        self.future = future
        self.method = method
        self.convert = convert
        self.on_error = on_error


class Session:
    """The calls in flight and the topic callbacks of one connection.

    The connector calls ``connection_made`` with the two operations it
    offers (write bytes, close), then ``data_received`` and finally
    ``connection_lost``.  Once the connection is gone every waiting call
    fails with ``ConnectionLost``, and so does every later call: reconnecting
    is the caller's decision (``when_closed`` tells it when).
    """

    def __init__(
        self,
        framework: Any,
        endpoint: str,
        log: Any,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self._txaio = framework
        self.endpoint = endpoint
        self._log = log
        self._core = ClientCore(max_line_bytes)
        self._write: Callable[[bytes], None] = self._not_connected
        self._close: Callable[[], None] = lambda: None
        self._calls: dict[int, _Call] = {}
        self._topics: dict[str, list[Callback]] = {}
        self._closing = False
        self._lost: ConnectionLost | None = None
        self._closed_waiters: list[Future] = []

    # -- the connector's side ---------------------------------------------------

    def connection_made(self, write: Callable[[bytes], None], close: Callable[[], None]) -> None:
        self._write = write
        self._close = close

    def data_received(self, data: bytes) -> None:
        for event in self._core.receive_data(data):
            self._handle(event)

    def connection_lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = ConnectionLost(
                self.endpoint, "closed by this client" if self._closing else reason
            )
        for request_id in self._core.connection_lost():
            self._fail(request_id, self._lost)
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            self._txaio.resolve(waiter, self._lost)

    # -- the caller's side ------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._lost is None

    def call(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None = None,
        convert: Callable[[Any], Any] = _unchanged,
        on_error: Callable[[], None] | None = None,
    ) -> Future:
        """Send a request; the future gets ``convert(result)`` or the error.

        ``on_error`` runs before the future is rejected, for callers that must
        undo something they did in anticipation of success.
        """
        if self._lost is not None:
            return self.failed(self._lost)
        if self._closing:
            return self.failed(ConnectionLost(self.endpoint, "closed by this client"))
        try:
            request_id = self._core.send_request(method, params)
        except ValueError as error:
            return self.failed(error)
        future = self._txaio.create_future()
        self._calls[request_id] = _Call(future, method, convert, on_error)
        self._write(self._core.data_to_send())
        return future

    def failed(self, error: Exception) -> Future:
        """A future that has already failed with ``error``: how a call refuses its arguments."""
        return self._txaio.create_future(error=error)

    def subscribe(self, topic: str, callback: Callback) -> Future:
        """Call ``callback(params)`` for each notification of ``topic``.

        The callback is registered before ``Subscribe`` is sent, so a sample
        the server sends right after its reply is not missed; it is removed
        again if the server refuses the topic.  It may return a future or be
        a coroutine function; a failure is logged, never raised here.
        """
        callbacks = self._topics.setdefault(topic, [])
        callbacks.append(callback)

        def forget() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return self.call("Subscribe", {"topic": topic}, on_error=forget)

    def unsubscribe(self, topic: str) -> Future:
        """Stop every callback of ``topic`` at once and tell the server."""
        self._topics.pop(topic, None)
        return self.call("Unsubscribe", {"topic": topic})

    def when_closed(self) -> Future:
        """A future that gets the ``ConnectionLost`` saying why the connection ended."""
        if self._lost is not None:
            return self._txaio.create_future(result=self._lost)
        waiter = self._txaio.create_future()
        self._closed_waiters.append(waiter)
        return waiter

    def close(self) -> Future:
        """Close the connection; the future fires (with ``ConnectionLost``) once it is closed."""
        waiter = self.when_closed()
        if self._lost is None and not self._closing:
            self._closing = True
            self._close()
        return waiter

    # -- internals --------------------------------------------------------------

    def _not_connected(self, data: bytes) -> None:
        raise RuntimeError("Session.call before connection_made")

    def _handle(self, event: Event) -> None:
        if isinstance(event, Response):
            self._succeed(event.request_id, event.result)
        elif isinstance(event, Failed):
            self._fail(event.request_id, event.error)
        elif isinstance(event, Notification):
            self._notify(event.topic, event.params)
        elif isinstance(event, Broken):
            self._broken(event)

    def _succeed(self, request_id: int, result: Any) -> None:
        call = self._calls.pop(request_id)
        if self._txaio.is_called(call.future):  # the caller cancelled it
            return
        try:
            value = call.convert(result)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            failure = ProtocolError(f"{call.method}: unexpected result {result!r}: {error!r}")
            self._txaio.reject(call.future, failure)
            return
        self._txaio.resolve(call.future, value)

    def _fail(self, request_id: int, error: Exception) -> None:
        call = self._calls.pop(request_id)
        if call.on_error is not None:
            call.on_error()
        if not self._txaio.is_called(call.future):
            self._txaio.reject(call.future, error)

    def _notify(self, topic: str, params: Any) -> None:
        for callback in list(self._topics.get(topic, ())):
            outcome = self._txaio.as_future(callback, params)
            self._txaio.add_callbacks(outcome, None, self._callback_failed(topic))

    def _callback_failed(self, topic: str) -> Callable[[Any], None]:
        def log_it(failure: Any) -> None:
            self._log.error(
                "callback for {topic} failed: {problem}",
                topic=topic,
                problem=self._txaio.failure_message(failure),
            )

        return log_it

    def _broken(self, event: Broken) -> None:
        self._log.error(
            "closing connection to {endpoint}: {problem}",
            endpoint=self.endpoint,
            problem=str(event.error),
        )
        self._lost = ConnectionLost(self.endpoint, f"protocol error: {event.error}")
        for request_id in event.abandoned:
            self._fail(request_id, event.error)
        self._close()
