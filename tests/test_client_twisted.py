"""The Twisted connector against a real dpmd: TCP, a UNIX socket and TLS."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks
from twisted.trial.unittest import TestCase

from dpmd.client import (
    STORAGE_TOPIC,
    ConnectFailed,
    ConnectionLost,
    DpmClient,
    EndpointError,
    ProtocolError,
    connect,
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


class TwistedConnectorTests(TestCase):
    @inlineCallbacks
    def open(self, endpoint: str) -> Any:
        client = yield connect(endpoint, reactor)
        self.addCleanup(client.close)
        return client

    @inlineCallbacks
    def check_storage_and_topic(self, client: DpmClient, service: DpmService) -> Any:
        status = yield client.query_storage_status()
        self.assertIsInstance(status, StorageStatus)
        self.assertEqual(status.path, str(service.config.workspace))
        samples: DeferredQueue[StorageStatus] = DeferredQueue()
        yield client.subscribe(STORAGE_TOPIC, samples.put)
        sample = yield samples.get()
        self.assertEqual(sample.path, status.path)
        self.assertEqual(sample.capacity, status.capacity)
        yield client.unsubscribe(STORAGE_TOPIC)

    @inlineCallbacks
    def test_tcp(self) -> Any:
        service = start_server(self)
        client = yield self.open(tcp_endpoint(service))
        yield self.check_storage_and_topic(client, service)

    @inlineCallbacks
    def test_unix_socket(self) -> Any:
        path = short_directory(self) / "dpm.sock"
        service = start_server(self, f"unix:{path}")
        client = yield self.open(f"unix:{path}")
        yield self.check_storage_and_topic(client, service)

    @inlineCallbacks
    def test_tls_verifies_the_server(self) -> Any:
        certificates = make_certificates(short_directory(self))
        service = start_server(self, tls_listen(certificates))
        port = service.ports[0].getHost().port
        client = yield self.open(f"tls:localhost:{port}:trustRoots={certificates.trust_roots}")
        yield self.check_storage_and_topic(client, service)
        for endpoint, problem in [
            (
                f"tls:localhost:{port}:trustRoots={certificates.other_trust_roots}",
                "certificate verify failed",
            ),
            (f"tls:127.0.0.1:{port}:trustRoots={certificates.trust_roots}", "IPAddressMismatch"),
        ]:
            error = yield self.assertFailure(connect(endpoint, reactor), ConnectFailed)
            self.assertEqual(error.endpoint, endpoint)
            self.assertIn(problem, error.reason)

    @inlineCallbacks
    def test_tls_client_certificate(self) -> Any:
        certificates = make_certificates(short_directory(self))
        service = start_server(self)
        port = yield listen_requiring_client_certificates(service, certificates)
        self.addCleanup(port.stopListening)
        endpoint = f"tls:localhost:{port.getHost().port}:trustRoots={certificates.trust_roots}"
        client = yield self.open(
            f"{endpoint}:certificate={certificates.client_certificate}"
            f":privateKey={certificates.client_key}"
        )
        status = yield client.query_storage_status()
        self.assertEqual(status.path, str(service.config.workspace))
        [session] = service.factories[0].sessions
        peer = session.transport.getPeerCertificate()
        self.assertEqual(peer.get_subject().commonName, "dpmctl test client")
        # Without a certificate the server hangs up: during the handshake or
        # (TLS 1.3) right after it, so the first call fails instead.
        try:
            anonymous = yield connect(endpoint, reactor)
            yield anonymous.query_storage_status()
        except (ConnectFailed, ConnectionLost) as error:
            self.assertEqual(error.endpoint, endpoint)
        else:
            self.fail("the server accepted a client without a certificate")

    @inlineCallbacks
    def test_connection_refused_names_the_endpoint(self) -> Any:
        service = start_server(self)
        endpoint = tcp_endpoint(service)
        yield service.ports[0].stopListening()
        error = yield self.assertFailure(connect(endpoint, reactor), ConnectFailed)
        self.assertIn(endpoint, str(error))
        self.assertIn("refused", str(error))
        missing = f"unix:{short_directory(self)}/none.sock"
        error = yield self.assertFailure(connect(missing, reactor), ConnectFailed)
        self.assertIn(missing, str(error))

    @inlineCallbacks
    def test_unusable_endpoints(self) -> Any:
        error = yield self.assertFailure(connect("udp:h:1", reactor), EndpointError)
        self.assertIn("unknown kind 'udp'", str(error))
        error = yield self.assertFailure(
            connect("tls:localhost:1:certificate=/nonexistent.pem", reactor), EndpointError
        )
        self.assertIn("/nonexistent.pem", str(error))
        roots = short_directory(self)
        (roots / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
        error = yield self.assertFailure(
            connect(f"tls:localhost:1:trustRoots={roots}", reactor), EndpointError
        )
        self.assertIn(str(roots), str(error))

    @inlineCallbacks
    def test_server_dropping_the_connection_fails_pending_calls(self) -> Any:
        service = start_server(self)
        endpoint = tcp_endpoint(service)
        client = yield self.open(endpoint)
        yield client.query_storage_status()  # the server's side of the connection exists now
        pending = client.query_storage_status()  # written, but not read before the abort
        [session] = service.factories[0].sessions
        session.transport.abortConnection()
        error = yield self.assertFailure(pending, ConnectionLost)
        self.assertEqual(error.endpoint, endpoint)
        self.assertIs((yield client.when_closed()), error)
        yield self.assertFailure(client.query_storage_status(), ConnectionLost)

    @inlineCallbacks
    def test_a_line_the_server_cannot_read_ends_the_connection(self) -> Any:
        service = start_server(self, max_line_bytes=1024)
        client = yield self.open(tcp_endpoint(service))
        yield client.query_storage_status()
        error = yield self.assertFailure(client.get_daq_status("x" * 2000), ProtocolError)
        self.assertIn("could not read a request", str(error))
        self.assertIn("longer than 1024 bytes", str(error))
        closed: Deferred[Any] = client.when_closed()
        self.assertIn("protocol error", (yield closed).reason)
