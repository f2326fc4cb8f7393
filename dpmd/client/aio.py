"""The asyncio connector: asyncio streams (and ``ssl``) feeding a ``Session``.

It accepts the same endpoint strings as the Twisted connector and gives them
the same meaning: ``tls:`` verifies the server's certificate and host name
against ``trustRoots`` (every ``*.pem`` file in that directory; the
system's authorities without it) and may present a client certificate.

    client = await dpmd.client.aio.connect("tcp:127.0.0.1:12083")
    status = await client.query_storage_status()
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from txaio import aio

from dpmd.client.api import DpmClient
from dpmd.client.core import DEFAULT_MAX_LINE_BYTES
from dpmd.client.endpoints import Endpoint, TcpEndpoint, TlsEndpoint, UnixEndpoint, parse_endpoint
from dpmd.client.errors import ConnectFailed, EndpointError
from dpmd.client.session import Session

READ_SIZE = 64 * 1024


def ssl_context(endpoint: TlsEndpoint, description: str) -> ssl.SSLContext:
    """A client context that checks the server the way Twisted's ``tls:`` endpoint does."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
    try:
        if endpoint.trust_roots is None:
            context.load_default_certs()
        else:
            # Every *.pem file of the directory, and only those; like Twisted,
            # a file that is no certificate makes the endpoint unusable.
            for path in sorted(Path(endpoint.trust_roots).iterdir()):
                if path.suffix.lower() == ".pem":
                    context.load_verify_locations(cadata=path.read_text("ascii"))
        if endpoint.certificate is not None:
            context.load_cert_chain(endpoint.certificate, endpoint.private_key)
    except (OSError, ValueError) as error:
        raise EndpointError(f"endpoint {description!r}: {error}") from None
    return context


async def _open(
    endpoint: Endpoint, description: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if isinstance(endpoint, UnixEndpoint):
        return await asyncio.open_unix_connection(endpoint.path)
    if isinstance(endpoint, TcpEndpoint):
        return await asyncio.open_connection(endpoint.host, endpoint.port)
    context = ssl_context(endpoint, description)
    return await asyncio.open_connection(endpoint.host, endpoint.port, ssl=context)


class _StreamConnection:
    """Reads the stream into the session until it ends; the session's ``close``."""

    def __init__(
        self, session: Session, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._session = session
        self._reader = reader
        self._writer = writer
        session.connection_made(writer.write, self.close)
        self._reading = asyncio.get_running_loop().create_task(self._read())

    def close(self) -> None:
        self._writer.close()

    async def _read(self) -> None:
        reason = "closed by the server"
        try:
            while data := await self._reader.read(READ_SIZE):
                self._session.data_received(data)
        except OSError as error:
            reason = str(error) or type(error).__name__
        finally:
            self._writer.close()
            self._session.connection_lost(reason)


async def connect(endpoint: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> DpmClient:
    """Connect to the dpmd at ``endpoint``; its methods return asyncio futures.

    Raises ``EndpointError`` for a string that cannot be used and
    ``ConnectFailed`` when no connection could be made in the endpoint's
    ``timeout``.
    """
    parsed = parse_endpoint(endpoint)
    try:
        reader, writer = await asyncio.wait_for(_open(parsed, endpoint), parsed.timeout)
    except TimeoutError:
        raise ConnectFailed(endpoint, f"no connection within {parsed.timeout} s") from None
    except OSError as error:
        raise ConnectFailed(endpoint, str(error) or type(error).__name__) from None
    loop = asyncio.get_running_loop()
    session = Session(aio.with_config(loop=loop), endpoint, aio.make_logger(), max_line_bytes)
    _StreamConnection(session, reader, writer)
    return DpmClient(session)
