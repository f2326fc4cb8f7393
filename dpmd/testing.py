"""Public test helpers: in-memory sessions and a line-based JSON client.

They live in the package (not under ``tests/``) so that projects embedding
dpmd can test against the same fakes.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, DeferredQueue, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport

from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.protocol import JsonRpcProtocol
from dpmd.rpc.topics import TopicHub


def synchronous(function: Any, *args: Any) -> Deferred[Any]:
    """A ``run_blocking`` that runs at once: for tests that fake threads away."""
    return succeed(function(*args))


def connect_session(
    dispatcher: Dispatcher,
    hub: TopicHub | None = None,
    max_line_bytes: int = 1 << 20,
    max_in_flight: int = 64,
) -> tuple[JsonRpcProtocol, StringTransport]:
    """A session over a ``StringTransport`` (its ``value()`` is what the client got)."""
    session = JsonRpcProtocol(dispatcher, hub or TopicHub(), max_line_bytes, max_in_flight)
    transport = StringTransport()
    session.makeConnection(transport)
    return session, transport


def written_messages(transport: StringTransport) -> list[Any]:
    """Decode and clear what the server wrote: one JSON value per line."""
    lines = transport.value().splitlines()
    transport.clear()
    return [json.loads(line) for line in lines]


class JsonLineClient(Protocol):
    """A plain client for real-socket tests: send objects, await messages in order."""

    def __init__(self) -> None:
        self.messages: DeferredQueue[Any] = DeferredQueue()
        self.closed: Deferred[None] = Deferred()
        self._buffer = b""

    def send(self, message: Any) -> None:
        self.transport.write(json.dumps(message).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        self.transport.write(data)

    def next_message(self) -> Deferred[Any]:
        return self.messages.get()

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.messages.put(json.loads(line))

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)
