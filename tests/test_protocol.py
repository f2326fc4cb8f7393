"""Framing and the connection's bounds, over an in-memory transport."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.methods import Method, Param, string_param
from dpmd.rpc.protocol import JsonRpcProtocol
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
        self.assertEqual(self.transport.producerState, "paused", "2 in flight: not yet half")
        self.pending[3].callback("d")
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual([m["id"] for m in written_messages(self.transport)], [0, 1, 2, 3])

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


class CountingTransport(StringTransport):
    """A ``StringTransport`` that counts how often reading was paused and resumed."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses = 0
        self.resumes = 0

    def pauseProducing(self) -> None:
        self.pauses += 1
        super().pauseProducing()

    def resumeProducing(self) -> None:
        self.resumes += 1
        super().resumeProducing()


class RobustnessTests(SynchronousTestCase):
    """The defects of the wire found by trying it as an attacker would."""

    def setUp(self) -> None:
        self.pending: list[Deferred[str]] = []
        methods = {
            "echo": Method("echo", lambda text: text, (Param("text", string_param),)),
            "echo_any": Method("echo_any", lambda value: value, (Param("value", lambda v: v),)),
            "wait": Method("wait", self._wait),
            "fired": Method("fired", lambda: succeed("done")),
        }
        self.dispatcher = Dispatcher(methods)
        self.hub = TopicHub()
        self.hub.add_topic("/t")
        self.session = JsonRpcProtocol(self.dispatcher, self.hub, 2048, 64)
        self.transport = CountingTransport()
        self.session.makeConnection(self.transport)

    def _wait(self) -> Deferred[str]:
        self.pending.append(Deferred())
        return self.pending[-1]

    def test_a_line_of_exactly_the_limit_with_crlf_split_across_reads(self) -> None:
        line = request(1, params=["x"])
        padded = line[:-1] + b" " * (2048 - len(line)) + b"}"
        self.session.dataReceived(padded + b"\r")
        self.assertFalse(self.transport.disconnecting)
        self.session.dataReceived(b"\n")
        [reply] = written_messages(self.transport)
        self.assertEqual(reply["result"], "x")
        self.session.dataReceived(padded + b"x")  # one byte more is still too long
        self.assertEqual(written_messages(self.transport)[0]["error"]["code"], -32600)

    def test_an_unterminated_last_line_before_a_half_close_is_answered(self) -> None:
        self.session.dataReceived(request(1) + b"\n" + request(2))
        self.assertEqual([m["id"] for m in written_messages(self.transport)], [1])
        self.session.readConnectionLost()
        self.assertEqual([m["id"] for m in written_messages(self.transport)], [2])
        self.assertTrue(self.transport.disconnecting)

    def test_lines_held_at_the_cap_are_answered_after_a_half_close(self) -> None:
        self.session.dataReceived(b"".join(request(n, "wait", ()) + b"\n" for n in range(66)))
        self.session.readConnectionLost()
        self.assertEqual(len(self.pending), 64)
        for deferred in list(self.pending):
            deferred.callback("late")
        self.assertEqual(len(self.pending), 66)
        self.assertFalse(self.transport.disconnecting)
        self.pending[64].callback("a")
        self.pending[65].callback("b")
        self.assertEqual(len(written_messages(self.transport)), 66)
        self.assertTrue(self.transport.disconnecting)

    def test_fast_lines_behind_63_pending_neither_recurse_nor_pause(self) -> None:
        """Each fast answer used to resume reading from inside the read loop: 2,000 of them
        went ~6 frames deeper each and hit the recursion limit."""
        self.session.dataReceived(b"".join(request(n, "wait", ()) + b"\n" for n in range(63)))
        for method in ("echo", "fired"):
            params = ("hi",) if method == "echo" else ()
            self.session.dataReceived(
                b"".join(request(n, method, params) + b"\n" for n in range(100, 2100))
            )
            self.assertEqual(len(written_messages(self.transport)), 2000)
        self.assertEqual((self.transport.pauses, self.transport.resumes), (0, 0))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_a_stream_of_slow_requests_pauses_once_per_half_cap(self) -> None:
        """Pausing and resuming once per request cost two epoll_ctl per request."""
        self.session.dataReceived(b"".join(request(n, "wait", ()) + b"\n" for n in range(64)))
        for answered, n in enumerate(range(64, 64 + 640)):
            self.pending[answered].callback("x")
            self.session.dataReceived(request(n, "wait", ()) + b"\n")
        self.assertLessEqual(self.transport.pauses, 640 // 32 + 1)
        self.assertEqual(len(self.pending), 64 + 640)

    def test_superseded_notifications_give_up_their_bytes(self) -> None:
        self.hub.subscribe("/t", self.session)
        self.session.pauseProducing()
        for n in range(10_000):
            self.hub.publish("/t", {"id": "A", "n": n, "pad": "x" * 1000}, "A")
        held = sum(len(item.line or b"") for item in self.session._outbox.items)
        self.assertLess(held, 2 * 1100)
        self.assertLess(len(self.session._outbox.items), 200)
        self.session.resumeProducing()
        [last] = written_messages(self.transport)
        self.assertEqual(last["params"]["n"], 9999)

    def test_unencodable_requests_are_answered_and_never_leak_a_slot(self) -> None:
        lines = [
            (b'{"jsonrpc":"2.0","id":1e400,"method":"echo","params":["x"]}', None, -32600),
            (b'{"jsonrpc":"2.0","id":"\\udcff","method":"echo","params":["x"]}', None, -32600),
            (b'{"jsonrpc":"2.0","id":3,"method":"\\udcff","params":["x"]}', 3, -32600),
            (b'{"jsonrpc":"2.0","id":4,"method":"echo","params":["\\udcff"]}', 4, -32602),
            (b'{"jsonrpc":"2.0","id":5,"method":"echo_any","params":[1e400]}', 5, -32602),
            (b'{"jsonrpc":"2.0","id":6,"method":"nope\\udcff"}', 6, -32600),
        ]
        for _ in range(20):  # 120 > 64: a leaked slot per request would stop the connection
            for line, reply_id, code in lines:
                self.session.dataReceived(line + b"\n")
                [reply] = written_messages(self.transport)
                self.assertEqual((reply["id"], reply["error"]["code"]), (reply_id, code), line)
        self.session.dataReceived(request("after") + b"\n")
        self.assertEqual(written_messages(self.transport)[0]["result"], "hi")

    def test_error_messages_name_what_could_not_be_represented(self) -> None:
        self.session.dataReceived(
            b'{"jsonrpc":"2.0","id":4,"method":"echo_any","params":{"value":[1,"a\\ud800"]}}\n'
        )
        [reply] = written_messages(self.transport)
        self.assertIn("params.value[1] holds a lone surrogate (\\ud800)", reply["error"]["message"])

    def test_a_valid_surrogate_pair_is_text(self) -> None:
        self.session.dataReceived(b'{"jsonrpc":"2.0","id":1,"method":"echo","params":["\\ud83d\\ude00"]}\n')
        self.assertEqual(written_messages(self.transport)[0]["result"], "\U0001f600")

    def test_deep_nesting_is_a_parse_error_not_a_dropped_connection(self) -> None:
        session = JsonRpcProtocol(self.dispatcher, self.hub, 1 << 20, 64)
        transport = StringTransport()
        session.makeConnection(transport)
        for depth in (129, 999, 100_000):
            session.dataReceived(b"[" * depth + b"]" * depth + b"\n")
            [reply] = written_messages(transport)
            self.assertEqual((reply["id"], reply["error"]["code"]), (None, -32700))
            self.assertIn("nested deeper than 128 levels", reply["error"]["message"])
        self.assertFalse(transport.disconnecting)

    def test_a_failing_dispatcher_is_logged_answered_and_frees_its_slot(self) -> None:
        """``addErrback(log.failure, "dispatcher failed")`` passed its arguments in the wrong
        order: the traceback was lost and the slot never came back."""

        class Broken(Dispatcher):
            def answer(self, line: bytes, session: Any = None) -> Any:
                return fail(RuntimeError("broken"))

        session = JsonRpcProtocol(Broken({}), self.hub, 2048, 2)
        transport = StringTransport()
        session.makeConnection(transport)
        session.dataReceived(request(1) + b"\n" + request(2) + b"\n" + request(3) + b"\n")
        replies = written_messages(transport)
        self.assertEqual([reply["error"]["code"] for reply in replies], [-32603] * 3)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 3)

    def test_closing_unregisters_the_producer(self) -> None:
        """TLS sends its close only once no producer is registered: it kept the connection
        open after an oversized line, and made Exit wait shutdown_timeout."""
        self.session.dataReceived(b"x" * 3000)
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producer)
