"""The typed client over a session, driven through the Twisted protocol in memory."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from txaio import aio, tx

from dpmd.client import ConnectFailed, ConnectionLost, DaqError, DpmClient, ProtocolError
from dpmd.client._twisted import ClientProtocol
from dpmd.client.errors import RpcError
from dpmd.client.session import Session
from dpmd.model import (
    AlertSeverity,
    DaqAlert,
    DaqReply,
    DaqStatus,
    DaqSubState,
    InternalDaqStatus,
    StorageStatus,
)
from tests.test_client_support import ENDPOINT, FakeServer, RecordingLog

STATUS = DaqStatus(
    id="TEST.1",
    file_id="INSTR.1",
    substate=DaqSubState.Merging,
    alerts=(DaqAlert("MergeError", "", AlertSeverity.Error, "merger failed", 5.0),),
    message="merging",
    timestamp=6.0,
)
STORAGE = StorageStatus("/ws", 1000, 600, 500, 7.0)


class TypedMethodTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        self.client = self.server.client

    def check(self, call: Deferred[Any], method: str, params: Any, result: Any) -> Any:
        request = self.server.reply(result)
        self.assertEqual(request["method"], method)
        self.assertEqual(request.get("params"), params)
        return self.successResultOf(call)

    def test_queue_daq_sends_the_specification_as_a_string(self) -> None:
        text = '{"id": "TEST.1"}'
        reply = self.check(
            self.client.queue_daq(text),
            "/daq/QueueDaq",
            {"specification": text},
            {"id": "TEST.1", "error": False},
        )
        self.assertEqual(reply, DaqReply("TEST.1", False))
        call = self.client.queue_daq({"id": "TEST.2"})
        [request] = self.server.requests()
        self.assertEqual(json.loads(request["params"]["specification"]), {"id": "TEST.2"})
        self.assertNoResult(call)

    def test_status_methods(self) -> None:
        wire = STATUS.to_json()
        self.assertEqual(
            self.check(
                self.client.get_daq_status("TEST.1"), "/daq/GetDaqStatus", {"id": "TEST.1"}, wire
            ),
            STATUS,
        )
        self.assertEqual(
            self.check(self.client.get_active_daqs(), "/daq/GetActiveDaqs", None, [wire, wire]),
            [STATUS, STATUS],
        )
        internal = self.check(
            self.client.get_internal_daq_status("TEST.1"),
            "/daq/GetInternalDaqStatus",
            {"id": "TEST.1"},
            {"status": wire, "detail": {"progress": None}},
        )
        self.assertEqual(internal, InternalDaqStatus(STATUS, {"progress": None}))
        self.assertTrue(internal.status.error)

    def test_commands(self) -> None:
        self.assertEqual(
            self.check(
                self.client.abort_daq("TEST.1"),
                "/daq/AbortDaq",
                {"id": "TEST.1"},
                {"id": "TEST.1", "error": True},
            ),
            DaqReply("TEST.1", True),
        )
        self.assertIsNone(
            self.check(
                self.client.retry_merge_daq("TEST.1"), "/daq/RetryMergeDaq", {"id": "TEST.1"}, None
            )
        )
        self.assertEqual(
            self.check(
                self.client.query_storage_status(),
                "/dpm/QueryStorageStatus",
                None,
                STORAGE.to_json(),
            ),
            STORAGE,
        )
        self.assertEqual(
            self.check(self.client.exit(), "/dpm/Exit", None, "bye"),
            "bye",
        )

    def test_unexpected_results_are_protocol_errors(self) -> None:
        for method, result in [
            (lambda: self.client.get_daq_status("X"), {"id": "X"}),
            (self.client.get_active_daqs, {"id": "X"}),
            (lambda: self.client.retry_merge_daq("X"), "done"),
            (self.client.exit, 3),
            (self.client.query_storage_status, {**STORAGE.to_json(), "free": "lots"}),
        ]:
            call = method()
            self.server.reply(result)
            failure = self.failureResultOf(call, ProtocolError)
            self.assertIn(repr(result), str(failure.value))
        self.assertTrue(self.client.connected)  # the stream itself was fine

    def test_responses_in_any_order(self) -> None:
        first = self.client.get_daq_status("A")
        second = self.client.get_daq_status("B")
        one, two = self.server.requests()
        self.server.send({"id": two["id"], "result": {**STATUS.to_json(), "id": "B"}})
        self.assertNoResult(first)
        self.assertEqual(self.successResultOf(second).id, "B")
        self.server.send({"id": one["id"], "result": {**STATUS.to_json(), "id": "A"}})
        self.assertEqual(self.successResultOf(first).id, "A")

    def test_daq_exception(self) -> None:
        call = self.client.abort_daq("NOPE")
        [request] = self.server.requests()
        data = {"exception": "DaqException", "id": "NOPE", "message": "unknown DAQ id 'NOPE'"}
        self.server.send(
            {
                "id": request["id"],
                "error": {"code": -32000, "message": data["message"], "data": data},
            }
        )
        error = self.failureResultOf(call, DaqError).value
        self.assertEqual((error.id, error.message), ("NOPE", "unknown DAQ id 'NOPE'"))

    def test_other_error(self) -> None:
        call = self.client.get_daq_status("X")
        [request] = self.server.requests()
        self.server.send({"id": request["id"], "error": {"code": -32601, "message": "no"}})
        self.assertEqual(self.failureResultOf(call, RpcError).value.code, -32601)

    def test_parameters_that_are_not_json_fail_the_call_only(self) -> None:
        call = self.client.queue_daq({"id": float("nan")})
        self.failureResultOf(call, ValueError)
        self.assertEqual(self.server.requests(), [])
        self.assertTrue(self.client.connected)

    def test_a_cancelled_call_ignores_its_late_answer(self) -> None:
        call = self.client.query_storage_status()
        call.cancel()
        self.failureResultOf(call, CancelledError)
        self.server.reply(STORAGE.to_json())
        self.assertTrue(self.client.connected)


class SubscriptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        self.client = self.server.client
        self.received: list[Any] = []

    def notify(self, topic: str, params: Any) -> None:
        self.server.send({"method": topic, "params": params})

    def test_topics_give_typed_objects(self) -> None:
        done = self.client.subscribe("/daq/status", self.received.append)
        request = self.server.reply(None)
        self.assertEqual(request["method"], "Subscribe")
        self.assertEqual(request["params"], {"topic": "/daq/status"})
        self.assertIsNone(self.successResultOf(done))
        self.client.subscribe("/dpm/storage", self.received.append)
        self.server.reply(None)
        self.client.subscribe("/other", self.received.append)
        self.server.reply(None)
        self.notify("/daq/status", STATUS.to_json())
        self.notify("/dpm/storage", STORAGE.to_json())
        self.notify("/other", [1])
        self.notify("/not-subscribed", {})
        self.assertEqual(self.received, [STATUS, STORAGE, [1]])

    def test_a_sample_right_after_the_reply_is_delivered(self) -> None:
        done = self.client.subscribe("/dpm/storage", self.received.append)
        [request] = self.server.requests()
        self.server.protocol.dataReceived(
            json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": None}).encode()
            + b"\n"
            + json.dumps(
                {"jsonrpc": "2.0", "method": "/dpm/storage", "params": STORAGE.to_json()}
            ).encode()
            + b"\n"
        )
        self.successResultOf(done)
        self.assertEqual(self.received, [STORAGE])

    def test_a_refused_topic_keeps_no_callback(self) -> None:
        done = self.client.subscribe("/nope", self.received.append)
        [request] = self.server.requests()
        self.server.send({"id": request["id"], "error": {"code": -32602, "message": "no topic"}})
        self.failureResultOf(done, RpcError)
        self.notify("/nope", 1)
        self.assertEqual(self.received, [])

    def test_unsubscribe_stops_every_callback_of_the_topic(self) -> None:
        self.client.subscribe("/dpm/storage", self.received.append)
        self.server.reply(None)
        self.client.subscribe("/dpm/storage", self.received.append)
        self.server.reply(None)
        self.notify("/dpm/storage", STORAGE.to_json())
        self.assertEqual(len(self.received), 2)
        done = self.client.unsubscribe("/dpm/storage")
        self.notify("/dpm/storage", STORAGE.to_json())  # may still be on its way
        request = self.server.reply(None)
        self.assertEqual(request, {**request, "method": "Unsubscribe"})
        self.successResultOf(done)
        self.assertEqual(len(self.received), 2)

    def test_a_failing_callback_is_logged_and_does_not_stop_others(self) -> None:
        def broken(status: DaqStatus) -> None:
            raise RuntimeError("callback bug")

        self.client.subscribe("/daq/status", broken)
        self.client.subscribe("/daq/status", self.received.append)
        self.server.requests()
        self.notify("/daq/status", STATUS.to_json())
        self.notify("/daq/status", {"id": "malformed"})
        self.assertEqual(self.received, [STATUS])
        self.assertEqual(len(self.server.log.errors), 3)
        self.assertIn("callback bug", self.server.log.errors[0])
        self.assertIn("/daq/status", self.server.log.errors[0])
        self.assertTrue(self.client.connected)

    def test_callbacks_may_be_coroutines(self) -> None:
        gate: Deferred[None] = Deferred()

        async def slow(status: DaqStatus) -> None:
            await gate
            self.received.append(status)

        self.client.subscribe("/daq/status", slow)
        self.notify("/daq/status", STATUS.to_json())
        self.assertEqual(self.received, [])
        gate.callback(None)
        self.assertEqual(self.received, [STATUS])


class ConnectionEndTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        self.client = self.server.client

    def test_lost_connection_fails_pending_and_later_calls(self) -> None:
        waiting = [self.client.query_storage_status(), self.client.get_active_daqs()]
        closed = self.client.when_closed()
        self.assertNoResult(closed)
        self.server.protocol.connectionLost(Failure(ConnectionError("reset by peer")))
        for call in waiting:
            error = self.failureResultOf(call, ConnectionLost).value
            self.assertEqual(error.endpoint, ENDPOINT)
            self.assertIn("reset by peer", str(error))
            self.assertIn(ENDPOINT, str(error))
        self.assertIs(self.successResultOf(closed), error)
        self.assertFalse(self.client.connected)
        self.assertIs(self.failureResultOf(self.client.exit(), ConnectionLost).value, error)
        self.assertIs(self.successResultOf(self.client.when_closed()), error)

    def test_close(self) -> None:
        waiting = self.client.query_storage_status()
        closed = self.client.close()
        self.assertTrue(self.server.transport.disconnecting)
        self.assertIn("closed by this client", str(self.failureResultOf(self.client.exit()).value))
        self.assertNoResult(waiting)
        self.server.protocol.connectionLost(Failure(ConnectionError("whatever")))
        error = self.failureResultOf(waiting, ConnectionLost).value
        self.assertEqual(error.reason, "closed by this client")
        self.assertIs(self.successResultOf(closed), error)
        self.successResultOf(self.client.close())

    def test_protocol_error_fails_pending_and_closes(self) -> None:
        waiting = self.client.query_storage_status()
        self.server.protocol.dataReceived(b"garbage\n")
        self.assertIn("not JSON", str(self.failureResultOf(waiting, ProtocolError).value))
        self.assertTrue(self.server.transport.disconnecting)
        self.assertIn("protocol error", str(self.failureResultOf(self.client.exit()).value))
        self.assertIn("not JSON", self.server.log.errors[0])
        self.server.protocol.connectionLost(Failure(ConnectionError("closed")))
        self.assertIn("protocol error", self.successResultOf(self.client.when_closed()).reason)


class ReadinessTests(SynchronousTestCase):
    def test_tls_connection_is_ready_after_the_handshake(self) -> None:
        protocol = ClientProtocol(Session(tx.with_config(), ENDPOINT, RecordingLog()), True)
        protocol.makeConnection(StringTransport())
        self.assertNoResult(protocol.ready)
        protocol.handshakeCompleted()
        self.successResultOf(protocol.ready)

    def test_failed_handshake_is_a_failure_to_connect(self) -> None:
        protocol = ClientProtocol(Session(tx.with_config(), ENDPOINT, RecordingLog()), True)
        protocol.makeConnection(StringTransport())
        protocol.connectionLost(Failure(ConnectionError("certificate verify failed")))
        error = self.failureResultOf(protocol.ready, ConnectFailed).value
        self.assertIn("certificate verify failed", str(error))
        self.assertIn(ENDPOINT, str(error))


class AsyncioSessionTests(SynchronousTestCase):
    """The same session hands out asyncio futures when given txaio's asyncio API."""

    def test_calls_and_notifications_on_an_event_loop(self) -> None:
        async def scenario() -> tuple[Any, ...]:
            written: list[bytes] = []
            session = Session(aio.with_config(loop=asyncio.get_running_loop()), ENDPOINT, None)
            session.connection_made(written.append, lambda: None)
            client = DpmClient(session)
            samples: list[StorageStatus] = []
            subscribed = client.subscribe("/dpm/storage", samples.append)
            failing = client.get_daq_status("NOPE")
            storage = client.query_storage_status()
            ids = [json.loads(data)["id"] for data in written]
            data = {"exception": "DaqException", "id": "NOPE", "message": "unknown"}
            for message in [
                {"id": ids[0], "result": None},
                {"method": "/dpm/storage", "params": STORAGE.to_json()},
                {"id": ids[2], "result": STORAGE.to_json()},
                {"id": ids[1], "error": {"code": -32000, "message": "unknown", "data": data}},
            ]:
                session.data_received(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
            try:
                await failing
            except DaqError as error:
                refused = error
            result = (await subscribed, samples, await storage, refused.id)
            pending = client.exit()
            session.connection_lost("reset")
            try:
                await pending
            except ConnectionLost as error:
                return (*result, error.reason)
            raise AssertionError("exit() did not fail")

        self.assertEqual(asyncio.run(scenario()), (None, [STORAGE], STORAGE, "NOPE", "reset"))
