"""The dispatcher against the JSON-RPC 2.0 specification's own examples, and dpmd's rules."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from dpmd.api import translate_error
from dpmd.model import DaqError
from dpmd.rpc.dispatch import Dispatcher, Method, Param, string_param


def number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


class Recorder:
    """Methods of the specification's examples, recording notifications."""

    def __init__(self) -> None:
        self.notified: list[tuple[str, tuple[Any, ...]]] = []

    def methods(self) -> dict[str, Method]:
        n = [Param(name, number) for name in "abcde"]
        table = [
            Method(
                "subtract",
                lambda minuend, subtrahend: minuend - subtrahend,
                (Param("minuend", number), Param("subtrahend", number)),
            ),
            Method("sum", lambda a, b, c: a + b + c, tuple(n[:3])),
            Method(
                "update",
                lambda **kw: self.notified.append(("update", tuple(kw.values()))),
                tuple(n),
            ),
            Method("notify_hello", lambda a: self.notified.append(("hello", (a,))), (n[0],)),
            Method("get_data", lambda: ["hello", 5]),
            Method("echo", lambda text: text, (Param("text", string_param),)),
            Method("boom", lambda: 1 / 0),
            Method("refuse", lambda: fail(DaqError("unknown DAQ id 'NOPE'", "NOPE"))),
            Method("session", lambda session: session, takes_session=True),
        ]
        return {method.name: method for method in table}


class DispatcherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.recorder = Recorder()
        self.dispatcher = Dispatcher(self.recorder.methods(), translate_error)

    def call(self, text: str | bytes, session: Any = None) -> Any:
        line = text.encode() if isinstance(text, str) else text
        reply = self.successResultOf(self.dispatcher.dispatch(line, session))
        return None if reply is None else json.loads(reply)

    # Each row: request line, expected reply (None: no reply at all).
    SPECIFICATION_EXAMPLES: list[tuple[str, Any]] = [
        (
            '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
            {"jsonrpc": "2.0", "result": 19, "id": 1},
        ),
        (
            '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
            {"jsonrpc": "2.0", "result": -19, "id": 2},
        ),
        (
            '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42},'
            ' "id": 3}',
            {"jsonrpc": "2.0", "result": 19, "id": 3},
        ),
        ('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
        ('{"jsonrpc": "2.0", "method": "foobar"}', None),
        (
            '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
            {"jsonrpc": "2.0", "error": {"code": -32601}, "id": "1"},
        ),
        (
            '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
            {"jsonrpc": "2.0", "error": {"code": -32700}, "id": None},
        ),
        (
            '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
            {"jsonrpc": "2.0", "error": {"code": -32600}, "id": None},
        ),
        (
            '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
            '{"jsonrpc": "2.0", "method"]',
            {"jsonrpc": "2.0", "error": {"code": -32700}, "id": None},
        ),
        ("[]", {"jsonrpc": "2.0", "error": {"code": -32600}, "id": None}),
        ("[1]", [{"jsonrpc": "2.0", "error": {"code": -32600}, "id": None}]),
        ("[1,2,3]", [{"jsonrpc": "2.0", "error": {"code": -32600}, "id": None}] * 3),
        (
            '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
            ' {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},'
            ' {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},'
            ' {"foo": "boo"},'
            ' {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},'
            ' {"jsonrpc": "2.0", "method": "get_data", "id": "9"}]',
            [
                {"jsonrpc": "2.0", "result": 7, "id": "1"},
                {"jsonrpc": "2.0", "result": 19, "id": "2"},
                {"jsonrpc": "2.0", "error": {"code": -32600}, "id": None},
                {"jsonrpc": "2.0", "error": {"code": -32601}, "id": "5"},
                {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"},
            ],
        ),
        (
            '[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
            ' {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]',
            None,
        ),
    ]

    def assertReplyMatches(self, reply: Any, expected: Any) -> None:
        """Compare, checking only the codes of error objects (messages are ours)."""
        if isinstance(expected, list):
            self.assertIsInstance(reply, list)
            self.assertEqual(len(reply), len(expected))
            for one, wanted in zip(reply, expected, strict=True):
                self.assertReplyMatches(one, wanted)
            return
        if expected is None:
            self.assertIsNone(reply)
            return
        if "error" in expected:
            self.assertEqual(reply["error"]["code"], expected["error"]["code"], reply)
            self.assertIsInstance(reply["error"]["message"], str)
            self.assertEqual(
                {k: v for k, v in reply.items() if k != "error"},
                {k: v for k, v in expected.items() if k != "error"},
            )
        else:
            self.assertEqual(reply, expected)

    def test_specification_examples(self) -> None:
        for line, expected in self.SPECIFICATION_EXAMPLES:
            with self.subTest(line=line):
                self.assertReplyMatches(self.call(line), expected)

    def test_notifications_run(self) -> None:
        self.call('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}')
        self.call('[{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]')
        self.assertEqual(self.recorder.notified, [("update", (1, 2, 3, 4, 5)), ("hello", (7,))])

    BAD_REQUESTS = [
        ('{"jsonrpc": "1.0", "method": "get_data", "id": 1}', 1),
        ('{"method": "get_data", "id": 1}', 1),
        ('{"jsonrpc": "2.0", "method": "get_data", "id": true}', None),
        ('{"jsonrpc": "2.0", "method": "get_data", "id": false}', None),
        ('{"jsonrpc": "2.0", "method": "get_data", "id": [1]}', None),
        ('{"jsonrpc": "2.0", "method": "get_data", "id": {"a": 1}}', None),
        ('{"jsonrpc": "2.0", "method": "get_data", "params": 3, "id": 4}', 4),
        ('{"jsonrpc": "2.0", "method": "get_data", "params": null, "id": 4}', 4),
        ('{"jsonrpc": "2.0", "id": 5}', 5),
        ('"just a string"', None),
        ("null", None),
    ]

    def test_invalid_requests(self) -> None:
        for line, echoed_id in self.BAD_REQUESTS:
            with self.subTest(line=line):
                reply = self.call(line)
                self.assertEqual(reply["error"]["code"], -32600)
                self.assertEqual(reply["id"], echoed_id)

    def test_ids_of_every_valid_kind_are_echoed(self) -> None:
        for request_id in ["abc", 7, 2.5, -1, None, ""]:
            request = {"jsonrpc": "2.0", "method": "get_data", "id": request_id}
            self.assertEqual(self.call(json.dumps(request))["id"], request_id)

    def test_parse_errors(self) -> None:
        for line in [b"\xff\xfe{}", b"{", b'{"jsonrpc": "2.0", "id": NaN}', b"[1,", b"Infinity"]:
            with self.subTest(line=line):
                reply = self.call(line)
                self.assertEqual((reply["id"], reply["error"]["code"]), (None, -32700))

    def invalid_params(self, params: Any) -> str:
        reply = self.call(
            json.dumps({"jsonrpc": "2.0", "method": "subtract", "params": params, "id": 1})
        )
        self.assertEqual(reply["error"]["code"], -32602)
        return reply["error"]["message"]

    def test_invalid_params_name_the_parameter(self) -> None:
        self.assertIn("'subtrahend'", self.invalid_params([1]))
        self.assertIn("'minuend'", self.invalid_params({"subtrahend": 1}))
        self.assertIn("'minuend'", self.invalid_params(["x", 1]))
        self.assertIn("'bogus'", self.invalid_params({"minuend": 1, "subtrahend": 2, "bogus": 3}))
        self.assertIn("3 given", self.invalid_params([1, 2, 3]))
        self.assertIn("'minuend'", self.invalid_params([True, 1]))

    def test_missing_params_means_none(self) -> None:
        self.assertEqual(
            self.call('{"jsonrpc":"2.0","method":"get_data","id":1}')["result"], ["hello", 5]
        )
        self.assertEqual(
            self.call('{"jsonrpc":"2.0","method":"get_data","params":{},"id":1}')["result"],
            ["hello", 5],
        )

    def test_daq_exception(self) -> None:
        reply = self.call('{"jsonrpc":"2.0","method":"refuse","id":2}')
        self.assertEqual(
            reply["error"],
            {
                "code": -32000,
                "message": "unknown DAQ id 'NOPE'",
                "data": {
                    "exception": "DaqException",
                    "id": "NOPE",
                    "message": "unknown DAQ id 'NOPE'",
                },
            },
        )

    def test_unexpected_failure_is_an_opaque_internal_error(self) -> None:
        reply = self.call('{"jsonrpc":"2.0","method":"boom","id":3}')
        error = reply["error"]
        self.assertEqual(error["code"], -32603)
        self.assertNotIn("ZeroDivision", error["message"])
        self.assertIn(error["data"]["incident"], error["message"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        # The dispatcher is still fine afterwards.
        self.assertEqual(
            self.call('{"jsonrpc":"2.0","method":"echo","params":["x"],"id":4}')["result"], "x"
        )

    def test_failing_notification_is_silent_but_logged(self) -> None:
        self.assertIsNone(self.call('{"jsonrpc":"2.0","method":"boom"}'))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_session_is_passed_to_methods_that_want_it(self) -> None:
        reply = self.call('{"jsonrpc":"2.0","method":"session","id":1}', session="me")
        self.assertEqual(reply["result"], "me")

    def test_replies_wait_for_deferred_results(self) -> None:
        pending: Deferred[str] = Deferred()
        dispatcher = Dispatcher({"slow": Method("slow", lambda: pending)})
        reply = dispatcher.dispatch(b'{"jsonrpc":"2.0","method":"slow","id":1}')
        self.assertNoResult(reply)
        pending.callback("done")
        self.assertEqual(json.loads(self.successResultOf(reply))["result"], "done")

    def test_batch_bound(self) -> None:
        batch = [{"jsonrpc": "2.0", "method": "get_data", "id": n} for n in range(1001)]
        reply = self.call(json.dumps(batch))
        self.assertEqual(reply["error"]["code"], -32600)
        self.assertIn("1001", reply["error"]["message"])
