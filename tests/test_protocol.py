"""Framing and the connection's bounds, over an in-memory transport."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from dpmd.rpc.dispatch import Dispatcher, Method, Param, string_param
from dpmd.testing import connect_session, written_messages
from dpmd.topics import TopicHub


def request(request_id: Any, method: str = "echo", params: Any = ("hi",)) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
    ).encode()


class FramingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pending: list[Deferred[str]] = []
        methods = {
            "echo": Method("echo", lambda text: text, (Param("text", string_param),)),
            "wait": Method("wait", self._wait),
        }
        self.dispatcher = Dispatcher(methods)
        self.hub = TopicHub()
        self.hub.add_topic("/t")
        self.session, self.transport = connect_session(
            self.dispatcher, self.hub, max_line_bytes=2048, max_in_flight=3
        )

    def _wait(self) -> Deferred[str]:
        self.pending.append(Deferred())
        return self.pending[-1]

    def test_crlf_and_lf_lines(self) -> None:
        self.session.dataReceived(request(1) + b"\r\n" + request(2) + b"\n")
        self.assertEqual([m["id"] for m in written_messages(self.transport)], [1, 2])

    def test_split_reads(self) -> None:
        line = request("split") + b"\n"
        for byte in line:
            self.session.dataReceived(bytes([byte]))
        self.assertEqual(written_messages(self.transport)[0]["result"], "hi")

    def test_blank_lines_are_ignored(self) -> None:
        self.session.dataReceived(b"\n\r\n  \n" + request(1) + b"\n")
        self.assertEqual(len(written_messages(self.transport)), 1)

    def test_non_utf8_is_a_parse_error(self) -> None:
        self.session.dataReceived(b'{"jsonrpc":"2.0","id":1,"method":"echo\xff"}\n')
        [reply] = written_messages(self.transport)
        self.assertEqual((reply["id"], reply["error"]["code"]), (None, -32700))
        self.assertFalse(self.transport.disconnecting)

    def test_oversized_line_is_refused_and_closes(self) -> None:
        self.session.dataReceived(b"[" + b" " * 3000)
        [reply] = written_messages(self.transport)
        self.assertEqual((reply["id"], reply["error"]["code"]), (None, -32600))
        self.assertIn("2048", reply["error"]["message"])
        self.assertTrue(self.transport.disconnecting)

    def test_oversized_complete_line_is_refused(self) -> None:
        self.session.dataReceived(request(1, params=["x" * 2100]) + b"\n" + request(2) + b"\n")
        [reply] = written_messages(self.transport)
        self.assertEqual(reply["error"]["code"], -32600)
        self.assertTrue(self.transport.disconnecting)

    def test_line_of_exactly_the_limit_is_accepted(self) -> None:
        line = request(1, params=["x"])
        padded = line[:-1] + b" " * (2048 - len(line)) + b"}"
        self.assertEqual(len(padded), 2048)
        self.session.dataReceived(padded + b"\n")
        self.assertEqual(written_messages(self.transport)[0]["result"], "x")

    def test_out_of_order_replies(self) -> None:
        self.session.dataReceived(request(1, "wait", ()) + b"\n" + request(2) + b"\n")
        self.assertEqual([m["id"] for m in written_messages(self.transport)], [2])
        self.pending[0].callback("late")
        self.assertEqual(
            written_messages(self.transport), [{"jsonrpc": "2.0", "id": 1, "result": "late"}]
        )

    def test_reading_pauses_beyond_the_in_flight_bound(self) -> None:
        lines = b"".join(request(n, "wait", ()) + b"\n" for n in range(5))
        self.session.dataReceived(lines)
        self.assertEqual(len(self.pending), 3)
        self.assertEqual(self.transport.producerState, "paused")
        self.pending[0].callback("a")
        self.assertEqual(len(self.pending), 4)
        self.pending[1].callback("b")
        self.pending[2].callback("c")
        self.assertEqual(len(self.pending), 5)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual([m["id"] for m in written_messages(self.transport)], [0, 1, 2])

    def test_slow_reader_coalesces_notifications_but_keeps_replies(self) -> None:
        self.hub.subscribe("/t", self.session)
        self.session.pauseProducing()  # the transport's buffer is full
        self.assertEqual(self.transport.producerState, "paused")
        self.hub.publish("/t", {"id": "A", "n": 1}, "A")
        self.hub.publish("/t", {"id": "B", "n": 1}, "B")
        self.hub.publish("/t", {"id": "A", "n": 2}, "A")
        self.session.send_notification("/t", {"id": "A", "n": 3}, "A")
        self.assertEqual(self.transport.value(), b"")
        self.session.resumeProducing()
        sent = written_messages(self.transport)
        self.assertEqual([m["params"] for m in sent], [{"id": "B", "n": 1}, {"id": "A", "n": 3}])

    def test_replies_held_while_output_is_blocked(self) -> None:
        self.session.dataReceived(request(1, "wait", ()) + b"\n")
        self.session.pauseProducing()
        self.pending[0].callback("x")
        self.assertEqual(self.transport.value(), b"")
        self.session.resumeProducing()
        self.assertEqual(written_messages(self.transport)[0]["result"], "x")

    def test_reading_stops_while_output_is_blocked(self) -> None:
        self.session.pauseProducing()
        self.session.dataReceived(request(1) + b"\n" + request(2) + b"\n")
        self.assertEqual(self.transport.value(), b"")
        self.session.resumeProducing()
        self.assertEqual([m["id"] for m in written_messages(self.transport)], [1, 2])

    def test_close_gracefully_answers_what_was_read(self) -> None:
        self.session.dataReceived(request(1, "wait", ()) + b"\n")
        closed = self.session.close_gracefully()
        self.session.dataReceived(request(2) + b"\n")
        self.assertFalse(self.transport.disconnecting)
        self.pending[0].callback("last")
        self.assertEqual([m["id"] for m in written_messages(self.transport)], [1])
        self.assertTrue(self.transport.disconnecting)
        self.assertNoResult(closed)
        self.session.connectionLost(None)
        self.successResultOf(closed)

    def test_half_close_still_answers(self) -> None:
        self.session.dataReceived(request(1, "wait", ()) + b"\n")
        self.session.readConnectionLost()
        self.assertFalse(self.transport.disconnecting)
        self.pending[0].callback("answer")
        self.assertEqual(written_messages(self.transport)[0]["result"], "answer")
        self.assertTrue(self.transport.disconnecting)

    def test_lost_connection_drops_subscriptions(self) -> None:
        self.hub.subscribe("/t", self.session)
        self.session.connectionLost(None)
        self.assertEqual(self.hub.subscriber_count("/t"), 0)
