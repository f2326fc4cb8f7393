"""Bounds of the whole server: connections at once and input held, across listeners."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from dpmd.rpc.bounds import FREE_INPUT_BYTES, ServerBounds
from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.listener import JsonRpcFactory
from dpmd.rpc.methods import Method
from dpmd.rpc.protocol import JsonRpcProtocol
from dpmd.testing import written_messages
from dpmd.topics import TopicHub

MIB = 1 << 20


class AbortableTransport(StringTransport):
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


def request(request_id: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "ping"}).encode() + b"\n"


class BoundsTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.dispatcher = Dispatcher({"ping": Method("ping", lambda: "pong")})
        self.hub = TopicHub()

    def factory(self, bounds: ServerBounds, max_line_bytes: int = 16 * MIB) -> JsonRpcFactory:
        return JsonRpcFactory(self.dispatcher, self.hub, max_line_bytes, bounds=bounds)

    def connect(self, factory: JsonRpcFactory, port: int = 1) -> tuple[Any, AbortableTransport]:
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        transport = AbortableTransport()
        protocol.makeConnection(transport)
        return protocol, transport


class ConnectionLimitTests(BoundsTestCase):
    def test_connections_beyond_the_limit_are_refused_across_listeners(self) -> None:
        bounds = ServerBounds(max_connections=3)
        tcp, unix = self.factory(bounds), self.factory(bounds)
        sessions = [self.connect(tcp), self.connect(unix), self.connect(tcp)]
        refused, transport = self.connect(unix, port=4)
        self.assertNotIsInstance(refused, JsonRpcProtocol)
        self.assertTrue(transport.aborted)
        [event] = [e for e in self.logged if "refusing a connection" in e["log_format"]]
        self.assertIn("127.0.0.1", event["peer"])
        sessions[0][0].connectionLost(None)
        session, transport = self.connect(unix, port=5)
        self.assertIsInstance(session, JsonRpcProtocol)
        session.dataReceived(request(1))
        self.assertEqual(written_messages(transport)[0]["result"], "pong")

    def test_stop_accepting_refuses_new_connections_and_close_sessions_closes(self) -> None:
        factory = self.factory(ServerBounds())
        session, transport = self.connect(factory)
        closed = factory.close_sessions()
        self.assertTrue(transport.disconnecting)
        _, late = self.connect(factory)
        self.assertTrue(late.aborted)
        self.assertNoResult(closed)
        session.connectionLost(None)
        self.successResultOf(closed)

    def setUp(self) -> None:
        super().setUp()
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)


class InputBudgetTests(BoundsTestCase):
    def test_forty_unfinished_lines_hold_no_more_than_the_budget(self) -> None:
        """40 clients each sending 15 MiB of an unfinished line took dpmd to 671 MiB."""
        bounds = ServerBounds(max_connections=100, max_buffered_bytes=64 * MIB)
        factory = self.factory(bounds)
        clients = [self.connect(factory) for _ in range(40)]
        chunk = b"[" + b" " * (MIB - 1)
        for _ in range(15):
            for session, transport in clients:
                if transport.producerState == "producing":
                    session.dataReceived(chunk)
        held = sum(len(session._lines) for session, _ in clients)
        self.assertLessEqual(held, 64 * MIB + 40 * (FREE_INPUT_BYTES + MIB))
        paused = [t for _, t in clients if t.producerState == "paused"]
        self.assertGreater(len(paused), 30)
        self.assertLessEqual(bounds.buffered_bytes, 64 * MIB + 40 * MIB)  # one read each, at most

    def test_small_requests_go_through_while_the_budget_is_spent(self) -> None:
        bounds = ServerBounds(max_buffered_bytes=2 * MIB)
        factory = self.factory(bounds)
        hog, hog_transport = self.connect(factory)
        hog.dataReceived(b"[" + b" " * (3 * MIB))
        self.assertEqual(hog_transport.producerState, "paused")
        small, transport = self.connect(factory)
        small.dataReceived(request(1))
        self.assertEqual(written_messages(transport)[0]["result"], "pong")
        self.assertEqual(transport.producerState, "producing")

    def test_waiting_connections_resume_when_the_budget_comes_back(self) -> None:
        bounds = ServerBounds(max_buffered_bytes=MIB + MIB // 2)
        factory = self.factory(bounds)
        first, first_transport = self.connect(factory)
        second, second_transport = self.connect(factory)
        first.dataReceived(b'["' + b"x" * (MIB + 100))
        second.dataReceived(b'["' + b"y" * (MIB + 100))
        self.assertEqual(second_transport.producerState, "paused")
        first.dataReceived(b'"]\n')  # its line is complete: handed on, its budget returned
        [reply] = written_messages(first_transport)[0]  # a batch of one string
        self.assertEqual(reply["error"]["code"], -32600)
        self.assertEqual(second_transport.producerState, "producing")
        first.connectionLost(None)
        second.connectionLost(None)
        self.assertEqual((bounds.buffered_bytes, bounds.connections), (0, 0))
