"""Framing: newline-delimited JSON-RPC messages on a stream connection.

This layer turns bytes into lines for the dispatcher and replies into bytes,
and it enforces the connection's bounds:

* a line longer than ``max_line_bytes`` gets a ``-32600`` reply and the
  connection is closed, because framing is lost;
* at most ``max_in_flight`` requests are being handled at once; beyond that
  the connection stops reading until replies have gone out;
* when the transport's write buffer is full (a slow reader), replies are held
  here, reading stops, and queued status notifications with the same
  coalescing key are replaced by the newest one, so memory stays bounded.

Twisted's ``LineOnlyReceiver`` cannot stop between lines of one read, and
``LineReceiver`` rescans its whole buffer on every read; a 16 MiB line
arriving in 64 KiB reads would be scanned hundreds of times.  So the framing
here keeps a scan offset into one ``bytearray``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from dpmd.lines import LineBuffer, LineTooLong
from dpmd.logs import get_logger
from dpmd.rpc.dispatch import Dispatcher, encode
from dpmd.rpc.errors import INVALID_REQUEST, RpcError
from dpmd.topics import TopicHub

log = get_logger(__name__)


class _Outgoing:
    """A queued line; notifications may be superseded before they are sent."""

    __slots__ = ("line", "superseded")

    def __init__(self, line: bytes) -> None:
        self.line = line
        self.superseded = False


@implementer(IPushProducer, IHalfCloseableProtocol)
class JsonRpcProtocol(Protocol):
    """One client connection: a session that may hold topic subscriptions.

    It is registered as the producer of its own output, so the transport
    tells it (``pauseProducing``) when the client is not reading.  A client
    that shuts down its sending side (``printf … | nc``) still gets the
    answers to everything it sent before the connection is closed.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        hub: TopicHub,
        max_line_bytes: int,
        max_in_flight: int = 64,
        registry: set[JsonRpcProtocol] | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._hub = hub
        self._registry = set() if registry is None else registry
        self._lines = LineBuffer(max_line_bytes)
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._output_blocked = False
        self._reading_paused = False
        self._queue: deque[_Outgoing] = deque()
        self._pending_notification: dict[str, _Outgoing] = {}
        self._closing = False
        self._connected = False
        self._lost: list[Deferred[None]] = []
        self.connected_peer = ""

    # -- connection events --------------------------------------------------

    def connectionMade(self) -> None:
        self._connected = True
        self._registry.add(self)
        self.transport.registerProducer(self, True)
        peer = self.transport.getPeer()
        self.connected_peer = str(peer)
        log.debug("client connected: {peer}", peer=self.connected_peer)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._closing = True
        self._connected = False
        self._registry.discard(self)
        self._hub.unsubscribe_all(self)
        self._queue.clear()
        self._pending_notification.clear()
        log.debug("client disconnected: {peer}", peer=self.connected_peer)
        waiting, self._lost = self._lost, []
        for deferred in waiting:
            deferred.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self._lines.feed(data)
        self._process_lines()

    def readConnectionLost(self) -> None:
        self.close_gracefully()

    def writeConnectionLost(self) -> None:
        """The client can no longer be written to; a full close follows."""

    # -- IPushProducer: the transport's view of our output ------------------

    def pauseProducing(self) -> None:
        self._output_blocked = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self._output_blocked = False
        self._flush_queue()
        self._update_reading()

    def stopProducing(self) -> None:
        self._output_blocked = True

    # -- session interface used by the API and the topic hub ----------------

    def send_notification(self, topic: str, params: Any, coalesce_key: str | None = None) -> None:
        """Send a notification; with a key, an unsent older one with that key is dropped."""
        if self._closing:
            return
        item = _Outgoing(encode({"jsonrpc": "2.0", "method": topic, "params": params}))
        key = None if coalesce_key is None else f"{topic}\x00{coalesce_key}"
        if key is not None and key in self._pending_notification:
            self._pending_notification[key].superseded = True
        self._send(item, key)

    def close_gracefully(self) -> Deferred[None]:
        """Stop reading, answer what was already read, write it all, then close.

        Fires when the connection is gone.
        """
        if not self._connected:
            return succeed(None)
        lost: Deferred[None] = Deferred()
        self._lost.append(lost)
        if not self._closing:
            self._closing = True
            self._update_reading()
            self._close_when_idle()
        return lost

    # -- internals ------------------------------------------------------------

    def _process_lines(self) -> None:
        while not self._reading_paused and not self._closing:
            try:
                line = self._lines.next_line()
            except LineTooLong:
                self._line_too_long()
                return
            if line is None:
                return
            self._handle_line(line)

    def _handle_line(self, line: bytes) -> None:
        self._in_flight += 1
        self._update_reading()
        self._dispatcher.dispatch(line, self).addCallback(self._reply).addErrback(
            log.failure, "dispatcher failed"
        )

    def _reply(self, reply: bytes | None) -> None:
        self._in_flight -= 1
        if reply is not None:
            self._send(_Outgoing(reply))
        if self._closing:
            self._close_when_idle()
        else:
            self._update_reading()

    def _close_when_idle(self) -> None:
        if self._in_flight == 0 and self._connected:
            self._write_all_queued()
            self.transport.loseConnection()

    def _line_too_long(self) -> None:
        limit = self._lines.max_line_bytes
        log.warn(
            "closing {peer}: request line longer than {limit} bytes",
            peer=self.connected_peer,
            limit=limit,
        )
        error = RpcError(INVALID_REQUEST, f"request line longer than {limit} bytes")
        self._lines.clear()
        self._send(_Outgoing(encode({"jsonrpc": "2.0", "id": None, "error": error.to_json()})))
        self.close_gracefully()

    def _send(self, item: _Outgoing, coalesce_key: str | None = None) -> None:
        if not self._connected:
            return
        if self._output_blocked or self._queue:
            self._queue.append(item)
            if coalesce_key is not None:
                self._pending_notification[coalesce_key] = item
        else:
            self.transport.write(item.line + b"\n")

    def _flush_queue(self) -> None:
        while self._queue and not self._output_blocked:
            self._write_item(self._queue.popleft())
        if not self._queue:
            self._pending_notification.clear()

    def _write_all_queued(self) -> None:
        while self._queue:
            self._write_item(self._queue.popleft())
        self._pending_notification.clear()

    def _write_item(self, item: _Outgoing) -> None:
        if not item.superseded:
            self.transport.write(item.line + b"\n")

    def _update_reading(self) -> None:
        should_pause = (
            self._closing or self._output_blocked or self._in_flight >= self._max_in_flight
        )
        if should_pause and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        elif not should_pause and self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()
            self._process_lines()


class JsonRpcFactory(Factory):
    """Builds sessions for one listener and knows them, so ``Exit`` can close them all."""

    def __init__(self, dispatcher: Dispatcher, hub: TopicHub, max_line_bytes: int) -> None:
        self._dispatcher = dispatcher
        self._hub = hub
        self._max_line_bytes = max_line_bytes
        self.sessions: set[JsonRpcProtocol] = set()

    def buildProtocol(self, addr: Any) -> JsonRpcProtocol:
        return JsonRpcProtocol(
            self._dispatcher, self._hub, self._max_line_bytes, registry=self.sessions
        )
