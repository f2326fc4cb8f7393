"""The client side of dpmd's JSON-RPC line protocol, without any I/O.

``ClientCore`` is a state machine: requests go in as method calls and come
out as bytes (``data_to_send``); bytes from the server go in
(``receive_data``) and come out as events.  It never touches a socket, a
clock or a future, so the Twisted and asyncio connectors share every rule of
the protocol and the tests can feed it bytes by hand.

The rules it keeps (protocol.md, sections 1 and 4):

* one JSON text per line, ``\\n`` or ``\\r\\n``; blank lines are skipped;
* every request gets a fresh integer id, responses are matched by id in
  whatever order they come;
* a message without ``id`` is a notification (a topic sample);
* error ``-32000`` with ``data.exception == "DaqException"`` is the DPM's
  refusal (``DaqError``); any other error is an ``RpcError``.

Anything else from the server (bad JSON, an unknown id, an overlong line, an
error with ``id: null`` that cannot be pinned on one request) means the two
sides no longer agree on the stream, so the core gives up: it emits
``Broken`` naming every request left unanswered and ignores further bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dpmd.client.errors import DaqError, ProtocolError, RpcError
from dpmd.lines import LineBuffer, LineTooLong

DAQ_EXCEPTION = -32000

DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
"""Longest line accepted from the server; generous, since a reply may list many DAQs."""


@dataclass(frozen=True)
class Response:
    """The result of request ``request_id``."""

    request_id: int
    result: Any


@dataclass(frozen=True)
class Failed:
    """Request ``request_id`` was answered with an error."""

    request_id: int
    error: RpcError | DaqError


@dataclass(frozen=True)
class Notification:
    """A message the server sent on its own: ``topic`` is its method, ``params`` its data."""

    topic: str
    params: Any


@dataclass(frozen=True)
class Broken:
    """The stream can no longer be trusted; ``abandoned`` requests will never be answered."""

    error: ProtocolError
    abandoned: tuple[int, ...]


Event = Response | Failed | Notification | Broken


def error_from_json(error: Any) -> RpcError | DaqError:
    """The exception for a JSON-RPC error object; ``ProtocolError`` if it is malformed."""
    if not isinstance(error, dict):
        raise ProtocolError(f"error member is not an object: {error!r}")
    code, message, data = error.get("code"), error.get("message"), error.get("data")
    if isinstance(code, bool) or not isinstance(code, int) or not isinstance(message, str):
        raise ProtocolError(f"error object without integer code and string message: {error!r}")
    if code == DAQ_EXCEPTION and isinstance(data, dict) and data.get("exception") == "DaqException":
        return DaqError(message, str(data.get("id") or ""))
    return RpcError(code, message, data)


def encode_request(
    request_id: int, method: str, params: list[Any] | dict[str, Any] | None
) -> bytes:
    """One request on one line; ``params`` is left out when there are none."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + b"\n"


class ClientCore:
    """One connection's protocol state: ids in flight, the read buffer, unsent bytes."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._lines = LineBuffer(max_line_bytes)
        self._outgoing = bytearray()
        self._next_id = 1
        self._pending: set[int] = set()
        self._broken = False

    @property
    def pending(self) -> frozenset[int]:
        """Ids of the requests sent and not yet answered."""
        return frozenset(self._pending)

    def send_request(self, method: str, params: list[Any] | dict[str, Any] | None = None) -> int:
        """Queue a request for sending and return its id.

        Raises ``ValueError`` (and queues nothing) when ``params`` cannot be
        encoded as JSON, e.g. a NaN or an object of an unknown type.
        """
        request_id = self._next_id
        try:
            line = encode_request(request_id, method, params)
        except TypeError as error:
            raise ValueError(f"{method}: parameters are not JSON: {error}") from None
        self._next_id += 1
        self._pending.add(request_id)
        self._outgoing += line
        return request_id

    def data_to_send(self) -> bytes:
        """The bytes queued since the last call, for the connector to write."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the server; returns the events of every complete line."""
        if self._broken:
            return []
        self._lines.feed(data)
        events: list[Event] = []
        while True:
            try:
                line = self._lines.next_line()
            except LineTooLong:
                limit = self._lines.max_line_bytes
                error = ProtocolError(f"server sent a line longer than {limit} bytes")
                events.append(self._break(error))
                return events
            if line is None:
                return events
            try:
                events.append(self._decode(line))
            except ProtocolError as error:
                events.append(self._break(error))
                return events

    def connection_lost(self) -> tuple[int, ...]:
        """The stream ended: returns the ids that will never be answered."""
        self._broken = True
        abandoned = tuple(sorted(self._pending))
        self._pending.clear()
        self._lines.clear()
        return abandoned

    def _break(self, error: ProtocolError) -> Broken:
        return Broken(error, self.connection_lost())

    def _decode(self, line: bytes) -> Event:
        try:
            message = json.loads(line)
        except ValueError:
            raise ProtocolError(f"server sent a line that is not JSON: {line[:200]!r}") from None
        if not isinstance(message, dict):
            raise ProtocolError(f"server sent a JSON {type(message).__name__}, not a message")
        if message.get("jsonrpc") != "2.0":
            raise ProtocolError(f'server message without "jsonrpc": "2.0": {line[:200]!r}')
        if "id" not in message:
            topic = message.get("method")
            if not isinstance(topic, str):
                raise ProtocolError(f"server message without id or method: {line[:200]!r}")
            return Notification(topic, message.get("params"))
        if "method" in message:
            raise ProtocolError(f"server sent a request ({message['method']!r}); none is expected")
        return self._response(message)

    def _response(self, message: dict[str, Any]) -> Response | Failed:
        request_id = message["id"]
        if ("result" in message) == ("error" in message):
            raise ProtocolError(f"response {request_id!r} needs exactly one of result and error")
        if request_id is None:
            # The server could not read one of our lines and cannot say which one.
            error = error_from_json(message["error"])
            raise ProtocolError(f"server could not read a request: {error}")
        known = isinstance(request_id, int) and not isinstance(request_id, bool)
        if not known or request_id not in self._pending:
            raise ProtocolError(f"response to a request never sent (id {request_id!r})")
        if "error" in message:
            event: Response | Failed = Failed(request_id, error_from_json(message["error"]))
        else:
            event = Response(request_id, message["result"])
        self._pending.discard(request_id)
        return event
