"""Mutual TLS over real sockets: who is let in, and what each role may call."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    serverFromString,
    wrapClientTLS,
)
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dpmd.access import AccessPolicy, private_unix_socket
from dpmd.mtls import MutualTLSParser, mutual_tls_options
from dpmd.rpc.bounds import ServerBounds
from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.listener import JsonRpcFactory
from dpmd.rpc.methods import Method
from dpmd.testing import JsonLineClient
from dpmd.topics import TopicHub
from tests.certificates import Issued, issue, make_ca

CONTROLLER = "ocm.example.org"
READER = "ops.example.org"

def call(request_id: int, method: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method}

class MutualTLSTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        self.ca = make_ca()
        _, self.ca_path = self.ca.write(self.directory, "ca")
        server = issue(self.ca, "dpmd.example.org", dns=("localhost",), ips=("127.0.0.1",))
        self.server_key, self.server_cert = server.write(self.directory, "server")
        methods = [Method("/daq/QueueDaq", lambda: "queued"),
                   Method("/daq/GetActiveDaqs", lambda: [])]  # fmt: skip
        self.factory = JsonRpcFactory(
            Dispatcher({method.name: method for method in methods}),
            TopicHub(),
            4096,
            access=AccessPolicy.of(control=[CONTROLLER], read=[READER]),
        )
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)
        return self.listen()

    @inlineCallbacks
    def listen(self) -> Any:
        description = (
            f"mtls:0:privateKey={self.server_key}:certKey={self.server_cert}"
            f":caCert={self.ca_path}:interface=127.0.0.1"
        )
        self.port = yield serverFromString(reactor, description).listen(self.factory)
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self.factory.close_sessions)

    @inlineCallbacks
    def connect(self, client_certificate: Issued | None) -> Any:
        own = None
        if client_certificate is not None:
            own = PrivateCertificate.loadPEM(
                client_certificate.certificate_pem + client_certificate.key_pem
            )
        options = optionsForClientTLS(
            "localhost",
            trustRoot=Certificate.loadPEM(self.ca.certificate_pem),
            clientCertificate=own,
        )
        endpoint = wrapClientTLS(
            options, TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        )
        client = JsonLineClient()
        yield connectProtocol(endpoint, client)
        self.addCleanup(lambda: client.closed)
        self.addCleanup(client.transport.loseConnection)
        return client

    @inlineCallbacks
    def assertRefused(self, client: JsonLineClient) -> Any:
        client.send(call(1, "/daq/GetActiveDaqs"))
        yield client.closed
        self.assertEqual(client.messages.pending, [])

    @inlineCallbacks
    def test_a_controller_is_served(self) -> None:
        client = yield self.connect(issue(self.ca, CONTROLLER))
        client.send(call(1, "/daq/QueueDaq"))
        self.assertEqual((yield client.next_message())["result"], "queued")

    @inlineCallbacks
    def test_an_identity_in_a_dns_name_counts(self) -> None:
        client = yield self.connect(issue(self.ca, "OCM workstation", dns=(CONTROLLER,)))
        client.send(call(1, "/daq/QueueDaq"))
        self.assertEqual((yield client.next_message())["result"], "queued")

    @inlineCallbacks
    def test_a_reader_may_read_but_not_queue(self) -> None:
        client = yield self.connect(issue(self.ca, READER))
        client.send(call(1, "/daq/QueueDaq"))
        error = (yield client.next_message())["error"]
        self.assertEqual(error["code"], -32001)
        self.assertEqual(error["message"], f"not authorised: {READER} may not call /daq/QueueDaq")
        client.send(call(2, "/daq/GetActiveDaqs"))
        self.assertEqual((yield client.next_message())["result"], [])

    @inlineCallbacks
    def test_an_unlisted_identity_is_disconnected_and_logged(self) -> None:
        client = yield self.connect(issue(self.ca, "intruder.example.org"))
        yield self.assertRefused(client)
        [event] = [e for e in self.logged if "refusing client" in e.get("log_format", "")]
        self.assertEqual(event["identities"], "intruder.example.org")
        self.assertIn("127.0.0.1", event["peer"])

    @inlineCallbacks
    def test_no_certificate_is_refused(self) -> None:
        client = yield self.connect(None)
        yield self.assertRefused(client)

    @inlineCallbacks
    def test_a_certificate_of_another_ca_is_refused(self) -> None:
        client = yield self.connect(issue(make_ca("another CA"), CONTROLLER))
        yield self.assertRefused(client)

    @inlineCallbacks
    def test_an_oversized_line_is_answered_and_closes_the_tls_connection(self) -> None:
        client = yield self.connect(issue(self.ca, CONTROLLER))
        client.send_raw(b"[" + b" " * 5000)
        self.assertEqual((yield client.next_message())["error"]["code"], -32600)
        yield client.closed

    @inlineCallbacks
    def test_closing_sessions_over_tls_is_prompt_and_refuses_newcomers(self) -> None:
        """``/dpm/Exit`` over TLS waited for shutdown_timeout: the protocol never
        unregistered itself as producer, so TLS never sent its close."""
        client = yield self.connect(issue(self.ca, CONTROLLER))
        client.send(call(1, "/daq/GetActiveDaqs"))
        yield client.next_message()
        yield self.factory.close_sessions()
        yield client.closed
        late = yield self.connect(issue(self.ca, CONTROLLER))
        yield self.assertRefused(late)

class OptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        ca = make_ca()
        _, self.ca_path = ca.write(self.directory, "ca")
        self.key, self.cert = issue(ca, "dpmd").write(self.directory, "server")

    def test_tls_older_than_1_2_is_not_offered(self) -> None:
        options = mutual_tls_options(str(self.key), str(self.cert), str(self.ca_path))
        context = options.getContext()
        flags = context.set_options(0)  # returns the options in force
        self.assertTrue(flags & SSL.OP_NO_TLSv1)
        self.assertTrue(flags & SSL.OP_NO_TLSv1_1)
        self.assertEqual(
            context.get_verify_mode(), SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
            | SSL.VERIFY_CLIENT_ONCE,
        )  # fmt: skip

    def test_bad_endpoint_strings_say_what_is_wrong(self) -> None:
        parser = MutualTLSParser()
        cases = [
            ((), {"privateKey": str(self.key), "caCert": str(self.ca_path)}, "takes one port"),
            (("1",), {"caCert": str(self.ca_path)}, "needs privateKey=FILE"),
            (("1",), {"privateKey": str(self.key)}, "needs caCert=FILE"),
            (("x",), {"privateKey": str(self.key), "caCert": str(self.ca_path)}, "integers"),
            (("1",), {"privateKey": "/no/key.pem", "caCert": str(self.ca_path)},
             "cannot read privateKey /no/key.pem"),
            (("1",), {"privateKey": str(self.key), "certKey": str(self.cert),
                      "caCert": str(self.key)},
             f"caCert {self.key} holds no PEM certificate"),
            (("1",), {"privateKey": str(self.key), "caCert": str(self.ca_path), "bogus": "1"},
             "unknown parameter 'bogus'"),
            (("1",), {"privateKey": str(self.key), "caCert": str(self.ca_path),
                      "handshakeTimeout": "0"}, "handshakeTimeout must be a positive number"),
        ]  # fmt: skip
        for args, kwargs, problem in cases:
            with self.subTest(kwargs=kwargs):
                error = self.assertRaises(ValueError, parser.parseStreamServer, reactor, *args,
                                          **kwargs)  # fmt: skip
                self.assertIn(problem, str(error))

class UnixSocketModeTests(TestCase):
    def listen(self, description: str) -> Any:
        factory = JsonRpcFactory(Dispatcher({}), TopicHub(), 4096)
        return serverFromString(reactor, private_unix_socket(description)).listen(factory)

    @inlineCallbacks
    def test_unix_sockets_are_private_unless_a_mode_is_given(self) -> None:
        directory = Path(tempfile.mkdtemp(dir="/tmp"))  # AF_UNIX paths are short
        self.addCleanup(shutil.rmtree, directory)
        cases = [("default.sock", "", 0o600), ("shared.sock", ":mode=660", 0o660)]
        for name, suffix, mode in cases:
            path = directory / name
            port = yield self.listen(f"unix:{path}{suffix}")
            self.addCleanup(port.stopListening)
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), mode, name)

    def test_other_endpoints_are_left_alone(self) -> None:
        tcp = "tcp:1:interface=127.0.0.1"
        self.assertEqual(private_unix_socket(tcp), tcp)
        self.assertEqual(private_unix_socket(r"unix:/a\:b:mode=644"), r"unix:/a\:b:mode=644")
        self.assertEqual(private_unix_socket(r"unix:/a\:mode=x"), r"unix:/a\:mode=x:mode=600")

assert json  # the module's helpers build JSON through JsonLineClient


class HandshakeTimeoutTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_a_client_that_never_completes_the_handshake_is_dropped(self) -> None:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        ca = make_ca()
        _, ca_path = ca.write(directory, "ca")
        key, cert = issue(ca, "dpmd").write(directory, "server")
        factory = JsonRpcFactory(Dispatcher({}), TopicHub(), 4096, bounds=ServerBounds(2))
        description = (f"mtls:0:privateKey={key}:certKey={cert}:caCert={ca_path}"
                       ":interface=127.0.0.1:handshakeTimeout=0.2")  # fmt: skip
        port = yield serverFromString(reactor, description).listen(factory)
        self.addCleanup(port.stopListening)
        silent = JsonLineClient()  # plain TCP: it never says hello
        yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), silent
        )
        yield silent.closed
        self.assertEqual(factory.sessions, set())
