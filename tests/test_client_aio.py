"""The asyncio connector against a real dpmd: TCP, a UNIX socket and TLS.

The server runs in this process on trial's reactor; each asyncio program
runs with ``asyncio.run`` in a worker thread, so the two event loops never
share a thread and talk only through the socket, as two programs would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from dpmd.client import (
    STORAGE_TOPIC,
    ConnectFailed,
    ConnectionLost,
    DpmClient,
    EndpointError,
    aio,
)
from dpmd.model import StorageStatus
from dpmd.server import DpmService
from tests.test_client_support import (
    listen_requiring_client_certificates,
    make_certificates,
    short_directory,
    start_server,
    tcp_endpoint,
    tls_listen,
)


def in_asyncio(program: Callable[..., Awaitable[Any]], *args: Any) -> Deferred[Any]:
    """Run ``program(*args)`` as an asyncio program in a thread; its result or exception."""
    return deferToThread(lambda: asyncio.run(program(*args)))


async def storage_and_one_sample(endpoint: str) -> tuple[StorageStatus, StorageStatus, bool]:
    client = await aio.connect(endpoint)
    status = await client.query_storage_status()
    sample: asyncio.Future[StorageStatus] = asyncio.get_running_loop().create_future()
    await client.subscribe(STORAGE_TOPIC, lambda s: sample.done() or sample.set_result(s))
    first = await sample
    await client.unsubscribe(STORAGE_TOPIC)
    await client.close()
    return status, first, client.connected


async def failure_of(program: Awaitable[Any]) -> BaseException:
    try:
        await program
    except Exception as error:
        return error
    raise AssertionError("no failure")


async def connect_failure(endpoint: str) -> BaseException:
    return await failure_of(aio.connect(endpoint))


class AsyncioConnectorTests(TestCase):
    @inlineCallbacks
    def check_storage_and_topic(self, endpoint: str, service: DpmService) -> Any:
        status, sample, connected = yield in_asyncio(storage_and_one_sample, endpoint)
        self.assertIsInstance(status, StorageStatus)
        self.assertEqual(status.path, str(service.config.workspace))
        self.assertEqual((sample.path, sample.capacity), (status.path, status.capacity))
        self.assertFalse(connected)

    def test_tcp(self) -> Deferred[Any]:
        service = start_server(self)
        return self.check_storage_and_topic(tcp_endpoint(service), service)

    def test_unix_socket(self) -> Deferred[Any]:
        path = short_directory(self) / "dpm.sock"
        service = start_server(self, f"unix:{path}")
        return self.check_storage_and_topic(f"unix:{path}", service)

    @inlineCallbacks
    def test_tls_verifies_the_server(self) -> Any:
        certificates = make_certificates(short_directory(self))
        service = start_server(self, tls_listen(certificates))
        port = service.ports[0].getHost().port
        yield self.check_storage_and_topic(
            f"tls:localhost:{port}:trustRoots={certificates.trust_roots}", service
        )
        for endpoint in [
            f"tls:localhost:{port}:trustRoots={certificates.other_trust_roots}",
            f"tls:127.0.0.1:{port}:trustRoots={certificates.trust_roots}",
        ]:
            error = yield in_asyncio(connect_failure, endpoint)
            self.assertIsInstance(error, ConnectFailed)
            self.assertEqual(error.endpoint, endpoint)
            self.assertIn("certificate verify failed", str(error))

    @inlineCallbacks
    def test_tls_client_certificate(self) -> Any:
        certificates = make_certificates(short_directory(self))
        service = start_server(self)
        port = yield listen_requiring_client_certificates(service, certificates)
        self.addCleanup(port.stopListening)
        endpoint = f"tls:localhost:{port.getHost().port}:trustRoots={certificates.trust_roots}"
        with_certificate = (
            f"{endpoint}:certificate={certificates.client_certificate}"
            f":privateKey={certificates.client_key}"
        )

        async def one_query(endpoint: str) -> StorageStatus:
            client = await aio.connect(endpoint)
            try:
                return await client.query_storage_status()
            finally:
                await client.close()

        status = yield in_asyncio(one_query, with_certificate)
        self.assertEqual(status.path, str(service.config.workspace))
        error = yield in_asyncio(failure_of, one_query(endpoint))
        self.assertIsInstance(error, ConnectFailed | ConnectionLost)
        self.assertEqual(error.endpoint, endpoint)

    @inlineCallbacks
    def test_connection_refused_and_unusable_endpoints(self) -> Any:
        service = start_server(self)
        endpoint = tcp_endpoint(service)
        yield service.ports[0].stopListening()
        error = yield in_asyncio(connect_failure, endpoint)
        self.assertIsInstance(error, ConnectFailed)
        self.assertIn(endpoint, str(error))
        missing = f"unix:{short_directory(self)}/none.sock"
        error = yield in_asyncio(connect_failure, missing)
        self.assertIsInstance(error, ConnectFailed)
        roots = short_directory(self)
        (roots / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
        for description, words in [
            ("udp:h:1", "unknown kind 'udp'"),
            ("tls:localhost:1:certificate=/nonexistent.pem", "/nonexistent.pem"),
            (f"tls:localhost:1:trustRoots={roots}", str(roots)),
        ]:
            error = yield in_asyncio(connect_failure, description)
            self.assertIsInstance(error, EndpointError)
            self.assertIn(words, str(error))

    @inlineCallbacks
    def test_server_dropping_the_connection_ends_the_client(self) -> Any:
        service = start_server(self)
        endpoint = tcp_endpoint(service)

        def drop_server_side() -> None:
            [session] = service.factories[0].sessions
            session.transport.abortConnection()

        async def program() -> tuple[BaseException, BaseException]:
            client: DpmClient = await aio.connect(endpoint)
            await client.query_storage_status()
            closed = client.when_closed()
            reactor.callFromThread(drop_server_side)
            reason = await closed
            return reason, await failure_of(client.query_storage_status())

        reason, later = yield in_asyncio(program)
        self.assertIsInstance(reason, ConnectionLost)
        self.assertEqual(reason.endpoint, endpoint)
        self.assertIs(later, reason)
