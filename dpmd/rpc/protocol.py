"""Framing: newline-delimited JSON-RPC messages on a stream connection.

This layer turns bytes into lines for the dispatcher and replies into bytes,
and it enforces the connection's bounds:

* a line longer than ``max_line_bytes`` gets a ``-32600`` reply and the
  connection is closed, because framing is lost;
* at most ``max_in_flight`` requests wait for an answer at once; at that
  point lines stay in the buffer, and once the buffer is not being emptied
  the connection stops being read until half of them are answered (so a
  steady stream of slow requests costs one pause and one resume per
  ``max_in_flight / 2`` requests, not two system calls per request);
* when the transport's write buffer is full (a slow reader), replies are held
  in the connection's ``Outbox`` (``dpmd.rpc.outbox``, which coalesces status
  notifications) and reading stops, so memory stays bounded;
* the input held in all connections together is bounded by the
  ``ServerBounds`` shared by every listener (``dpmd.rpc.bounds``).

Lines are taken from the buffer in one loop that never re-enters itself:
an answer that comes while the loop runs (a handler that returned a plain
value, or a Deferred that had already fired) only lets the loop go on.

It calls the dispatcher, the topic hub (only to drop a lost session's
subscriptions) and ``dpmd.access``; which connections are accepted, and
closing them all, is the listener's (``dpmd.rpc.listener``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IPushProducer,
)
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from dpmd.access import AccessPolicy, IClientIdentities, Role
from dpmd.encoding import PreEncoded, encode, scrub
from dpmd.lines import LineBuffer, LineTooLong
from dpmd.logs import get_logger
from dpmd.rpc.bounds import ServerBounds
from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.errors import INTERNAL_ERROR, INVALID_REQUEST, RpcError, error_line
from dpmd.rpc.outbox import Outbox
from dpmd.topics import TopicHub

log = get_logger(__name__)

MAX_IN_FLIGHT = 64


@implementer(IPushProducer, IHalfCloseableProtocol, IHandshakeListener)
class JsonRpcProtocol(Protocol):
    """One client connection: a session that may hold topic subscriptions.

    It is registered as the producer of its own output, so the transport
    tells it (``pauseProducing``) when the client is not reading.  A client
    that shuts down its sending side (``printf … | nc``) still gets the
    answers to everything it sent, its last line included even without a
    newline, before the connection is closed.

    ``role`` and ``identity`` are what the dispatcher authorises by: every
    method and no name, unless the transport authenticates its client
    (``IClientIdentities``), in which case they come from ``access`` once the
    TLS handshake is done, and a client that has no role is disconnected.
    """

    transport: Any

    def __init__(
        self,
        dispatcher: Dispatcher,
        hub: TopicHub,
        max_line_bytes: int,
        max_in_flight: int = MAX_IN_FLIGHT,
        registry: set[JsonRpcProtocol] | None = None,
        bounds: ServerBounds | None = None,
        access: AccessPolicy | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._hub = hub
        self._registry = set() if registry is None else registry
        self._bounds = bounds
        self._access = access or AccessPolicy()
        self._lines = LineBuffer(max_line_bytes)
        self._max_in_flight = max_in_flight
        self._resume_at = max_in_flight // 2
        self._in_flight = 0
        self._at_cap = False
        self._charged = 0
        self._over_budget = False
        self._output_blocked = False
        self._reading_paused = False
        self._processing = False
        self._input_ended = False
        self._closing = False
        self._close_requested = False
        self._connected = False
        self._outbox = Outbox()
        self._held = self._outbox.items  # tested on every reply: a deque's truth, no call
        self._lost: list[Deferred[None]] = []
        self.connected_peer = ""
        self.role: Role | None = Role.CONTROL
        self.identity = ""

    # -- connection events --------------------------------------------------

    def connectionMade(self) -> None:
        self._connected = True
        self._registry.add(self)
        self.transport.registerProducer(self, True)
        self.connected_peer = str(self.transport.getPeer())
        if IClientIdentities.providedBy(self.transport):
            self.role = None  # known once the handshake is done; nothing arrives before
        log.debug("client connected: {peer}", peer=self.connected_peer)

    def handshakeCompleted(self) -> None:
        """TLS is up: on an authenticating listener, decide the client's role or drop it."""
        if not IClientIdentities.providedBy(self.transport):
            return
        identities = self.transport.client_identities()
        found = self._access.role_of(identities)
        if found is None:
            log.warn(
                "refusing client {identities} from {peer}: not in access.control or access.read",
                identities=", ".join(identities) or "(no identity in its certificate)",
                peer=self.connected_peer,
            )
            self._close_now()
            return
        self.role, self.identity = found
        log.info(
            "client {identity} connected from {peer} with role {role}",
            identity=self.identity,
            peer=self.connected_peer,
            role=self.role.value,
        )

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._closing = True
        self._connected = False
        self._registry.discard(self)
        self._hub.unsubscribe_all(self)
        self._outbox.clear()
        self._lines.clear()
        if self._bounds is not None:
            self._bounds.forget(self)
            self._bounds.recharge(self._charged, 0)
            self._charged = 0
            self._bounds.release()
        log.debug("client disconnected: {peer}", peer=self.connected_peer)
        waiting, self._lost = self._lost, []
        for deferred in waiting:
            deferred.callback(None)

    def dataReceived(self, data: bytes) -> None:
        if self._close_requested:
            return  # the TLS close may need reading on; what a client sends now is not heard
        self._lines.feed(data)
        if self._bounds is not None:
            self._account_input(grew=True)
        self._process_lines()

    def readConnectionLost(self) -> None:
        self._input_ended = True
        self._process_lines()

    def writeConnectionLost(self) -> None:
        """The client can no longer be written to; a full close follows."""

    # -- IPushProducer: the transport's view of our output ------------------

    def pauseProducing(self) -> None:
        self._output_blocked = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self._output_blocked = False
        self._flush_queue()
        self._process_lines()

    def stopProducing(self) -> None:
        self._output_blocked = True

    # -- the shared input budget ------------------------------------------------

    def input_budget_available(self) -> None:
        self._over_budget = False
        self._update_reading()

    def _account_input(self, grew: bool) -> None:
        assert self._bounds is not None
        charge = ServerBounds.charge_for(len(self._lines))
        if charge != self._charged:
            before, self._charged = self._charged, charge
            self._bounds.recharge(before, charge)
        if grew and charge and not self._over_budget and self._bounds.exhausted():
            self._over_budget = True
            self._bounds.wait(self)
            self._update_reading()

    # -- session interface used by the API and the topic hub ----------------

    def send_notification(self, topic: str, params: Any, coalesce_key: str | None = None) -> None:
        """Send a notification; with a key, an unsent older one with that key is dropped."""
        if self._closing or not self._connected:
            return
        if type(params) is PreEncoded:  # encoded once for every subscriber
            line = b'{"jsonrpc":"2.0","method":' + encode(topic) + b',"params":' + params.json
            line += b"}"
        else:
            message = {"jsonrpc": "2.0", "method": topic, "params": params}
            try:
                line = encode(message)
            except (ValueError, TypeError, RecursionError):
                log.error("notification on {topic} held values JSON cannot carry", topic=topic)
                line = encode(scrub(message))
        if not (self._output_blocked or self._held):
            self.transport.write(line + b"\n")
            return
        key = None if coalesce_key is None else (topic, coalesce_key)
        self._outbox.hold_notification(line, key)

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
            self._close_if_done()
        return lost

    # -- internals ------------------------------------------------------------

    def _process_lines(self) -> None:
        if self._processing:
            return  # the loop below is running further up the stack and will go on
        self._processing = True
        lines, answer = self._lines, self._dispatcher.answer
        try:
            while (
                not self._closing
                and not self._output_blocked
                and self._in_flight < self._max_in_flight
            ):
                try:
                    line = lines.next_line()
                    if line is None and self._input_ended:
                        line = lines.take_rest()
                except LineTooLong:
                    self._line_too_long()
                    return
                if line is None:
                    break
                reply = answer(line, self)
                if type(reply) is bytes:
                    if self._held or self._output_blocked or not self._connected:
                        self._send(reply)
                    else:
                        self.transport.write(reply + b"\n")
                elif reply is not None:
                    self._await(reply)  # type: ignore[arg-type]
        finally:
            self._processing = False
        if self._bounds is not None and self._charged:
            self._account_input(grew=False)
        self._update_reading()
        self._close_if_done()

    def _await(self, reply: Deferred[bytes | None]) -> None:
        self._in_flight += 1
        reply.addCallbacks(self._reply, self._dispatcher_failed)

    def _reply(self, reply: bytes | None) -> None:
        self._in_flight -= 1
        if reply is not None:
            self._send(reply)
        if not self._processing:
            self._process_lines()

    def _dispatcher_failed(self, failure: Failure) -> None:
        """The dispatcher's Deferreds never fail; if one does, the client still hears of it."""
        log.failure("the dispatcher failed", failure)
        self._reply(error_line(None, RpcError(INTERNAL_ERROR, "internal error")))

    def _close_if_done(self) -> None:
        if not self._connected or self._in_flight:
            return
        if self._closing or (self._input_ended and not len(self._lines)):
            self._close_now()

    def _close_now(self) -> None:
        """Write what is queued and close.

        A producer left registered, or reading left paused, would keep a TLS
        connection open: it sends its close only once no producer is
        registered, and it closes only once it has read the client's.
        """
        if self._close_requested:
            return
        self._close_requested = True
        self._closing = True
        self._write_all_queued()
        if self._reading_paused:
            # TLS closes only once the client's close_notify has been read.
            self._reading_paused = False
            self.transport.resumeProducing()
        self.transport.unregisterProducer()
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
        if self._bounds is not None:
            self._account_input(grew=False)
        self._send(error_line(None, error))
        self.close_gracefully()

    def _send(self, line: bytes) -> None:
        if not self._connected:
            return
        if self._output_blocked or self._held:
            self._outbox.hold(line)
        else:
            self.transport.write(line + b"\n")

    def _flush_queue(self) -> None:
        """Write what is held while the transport takes it (a write may pause us)."""
        next_line = self._outbox.next_line
        while not self._output_blocked:
            line = next_line()
            if line is None:
                break
            self.transport.write(line + b"\n")

    def _write_all_queued(self) -> None:
        next_line = self._outbox.next_line
        while (line := next_line()) is not None:
            self.transport.write(line + b"\n")

    def _update_reading(self) -> None:
        if not self._connected or self._input_ended or self._close_requested:
            return
        if self._in_flight >= self._max_in_flight:
            self._at_cap = True
        elif self._in_flight <= self._resume_at:
            self._at_cap = False
        pause = self._closing or self._output_blocked or self._over_budget or self._at_cap
        if pause and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        elif not pause and self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()
