"""One listener's side of the wire: which connections get a session, and closing them all.

``JsonRpcFactory`` is what ``strports.service`` listens with.  It refuses a
connection beyond the server's ``max_connections`` (counted by the
``ServerBounds`` every listener shares) and every connection once the server
is stopping; it knows the sessions it built, so that ``Exit`` and the
server's stop can close them after they have answered what they read.

It builds sessions (``dpmd.rpc.protocol``) and calls nothing else.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import Factory, Protocol

from dpmd.access import AccessPolicy
from dpmd.logs import get_logger
from dpmd.rpc.bounds import ServerBounds
from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.protocol import MAX_IN_FLIGHT, JsonRpcProtocol
from dpmd.topics import TopicHub

log = get_logger(__name__)


class _Refused(Protocol):
    """A connection the server will not serve: closed as soon as it is accepted."""

    def connectionMade(self) -> None:
        self.transport.abortConnection()  # type: ignore[union-attr]


class JsonRpcFactory(Factory):
    """Builds sessions for one listener and knows them, so ``Exit`` can close them all.

    ``bounds`` is shared by the factories of every listener of a server (the
    connection count and the input budget are the server's, not one
    listener's); ``access`` gives roles to clients of authenticating
    listeners (``mtls:``).
    """

    noisy = False

    def __init__(
        self,
        dispatcher: Dispatcher,
        hub: TopicHub,
        max_line_bytes: int,
        *,
        bounds: ServerBounds | None = None,
        access: AccessPolicy | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._dispatcher = dispatcher
        self._hub = hub
        self._max_line_bytes = max_line_bytes
        self._bounds = ServerBounds() if bounds is None else bounds
        self._access = access or AccessPolicy()
        self._max_in_flight = max_in_flight
        self._accepting = True
        self.sessions: set[JsonRpcProtocol] = set()

    def buildProtocol(self, addr: Any) -> Protocol:
        if not self._accepting:
            log.info("refusing a connection from {peer}: dpmd is stopping", peer=str(addr))
            return _Refused()
        if not self._bounds.admit():
            log.warn(
                "refusing a connection from {peer}: {count} connections open (max_connections)",
                peer=str(addr),
                count=self._bounds.connections,
            )
            return _Refused()
        return JsonRpcProtocol(
            self._dispatcher,
            self._hub,
            self._max_line_bytes,
            self._max_in_flight,
            registry=self.sessions,
            bounds=self._bounds,
            access=self._access,
        )

    def stop_accepting(self) -> None:
        """Close every connection accepted from now on, at once (the server is stopping)."""
        self._accepting = False

    def close_sessions(self) -> Deferred[None]:
        """Stop accepting, then close every session once it has answered what it read."""
        self.stop_accepting()
        closing = [session.close_gracefully() for session in list(self.sessions)]
        return gatherResults(closing).addCallback(lambda _: None)
