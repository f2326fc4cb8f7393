"""The Twisted connector: a ``Protocol`` that feeds a ``Session``, and ``connect``.

Named ``_twisted`` so that it cannot shadow the ``twisted`` package.  The
endpoint string goes to Twisted's own ``clientFromString`` after
``parse_endpoint`` has checked that the asyncio connector would accept it
too.  For TLS the connection counts as made only once the handshake (and so
the server's certificate check) has succeeded: a refused certificate is a
failure to connect, not a connection that dies on first use.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from txaio import tx
from zope.interface import implementer

from dpmd.client.api import DpmClient
from dpmd.client.core import DEFAULT_MAX_LINE_BYTES
from dpmd.client.endpoints import TlsEndpoint, parse_endpoint
from dpmd.client.errors import ConnectFailed, EndpointError
from dpmd.client.session import Session


@implementer(IHandshakeListener)
class ClientProtocol(Protocol):
    """Bytes between a Twisted transport and a ``Session``; ``ready`` fires once usable."""

    def __init__(self, session: Session, after_handshake: bool) -> None:
        self.session = session
        self.ready: Deferred[None] = Deferred()
        self._after_handshake = after_handshake

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None  # Twisted sets it before calling connectionMade
        self.session.connection_made(transport.write, transport.loseConnection)
        if not self._after_handshake:
            self.ready.callback(None)

    def handshakeCompleted(self) -> None:
        self.ready.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.session.data_received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        message = reason.getErrorMessage()
        if not self.ready.called:
            self.ready.errback(ConnectFailed(self.session.endpoint, message))
        self.session.connection_lost(message)


def connect(
    endpoint: str, reactor: Any = None, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Deferred[DpmClient]:
    """Connect to the dpmd at ``endpoint`` (a client endpoint string).

    Fails with ``EndpointError`` for a string that cannot be used and with
    ``ConnectFailed`` when no connection could be made.
    """
    if reactor is None:
        from twisted.internet import reactor
    return ensureDeferred(_connect(endpoint, reactor, max_line_bytes))


async def _connect(endpoint: str, reactor: Any, max_line_bytes: int) -> DpmClient:
    parsed = parse_endpoint(endpoint)
    try:
        twisted_endpoint = clientFromString(reactor, endpoint)
    except Exception as error:  # reading the certificates may fail in many ways
        raise EndpointError(f"endpoint {endpoint!r}: {error}") from None
    session = Session(tx.with_config(), endpoint, tx.make_logger(), max_line_bytes)
    protocol = ClientProtocol(session, isinstance(parsed, TlsEndpoint))
    try:
        await connectProtocol(twisted_endpoint, protocol)
    except ConnectError as error:
        raise ConnectFailed(endpoint, str(error)) from None
    await protocol.ready
    return DpmClient(session)
