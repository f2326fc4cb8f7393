"""The dispatcher against the JSON-RPC 2.0 specification's own examples, and dpmd's rules."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from dpmd.access import Role
from dpmd.api import translate_error
from dpmd.encoding import PreEncoded
from dpmd.model import DaqError
from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.errors import RpcError, error_line
from dpmd.rpc.methods import Method, Param, string_param


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


def decoded(reply: Any) -> Any:
    return json.loads(reply)


class PlainAnswerTests(SynchronousTestCase):
    """Plain values are answered at once: no Deferred on the way of a status query."""

    def setUp(self) -> None:
        self.dispatcher = Dispatcher(Recorder().methods(), translate_error)

    def test_plain_results_and_raised_errors_are_bytes(self) -> None:
        for line, key in [
            (b'{"jsonrpc":"2.0","method":"get_data","id":1}', "result"),
            (b'{"jsonrpc":"2.0","method":"boom","id":2}', "error"),
            (b'{"jsonrpc":"2.0","method":"nope","id":3}', "error"),
            (b'[{"jsonrpc":"2.0","method":"get_data","id":4}]', None),
        ]:
            with self.subTest(line=line):
                reply = self.dispatcher.answer(line)
                self.assertIsInstance(reply, bytes)
                if key is not None:
                    self.assertIn(key, decoded(reply))
        self.flushLoggedErrors(ZeroDivisionError)

    def test_a_daq_exception_raised_synchronously_keeps_its_data(self) -> None:
        def refuse() -> None:
            raise DaqError("unknown DAQ id 'X'", "X")

        dispatcher = Dispatcher({"refuse": Method("refuse", refuse)}, translate_error)
        reply = decoded(dispatcher.answer(b'{"jsonrpc":"2.0","method":"refuse","id":1}'))
        self.assertEqual(reply["error"]["code"], -32000)
        self.assertEqual(reply["error"]["data"]["id"], "X")

    def test_pre_encoded_results_are_spliced_in_as_they_are(self) -> None:
        encoded = PreEncoded.of({"free": 5, "path": "/ws"})
        dispatcher = Dispatcher({"now": Method("now", lambda: encoded)})
        for request_id in [7, "seven", None, 2.5]:
            request = {"jsonrpc": "2.0", "method": "now", "id": request_id}
            reply = dispatcher.answer(json.dumps(request).encode())
            self.assertEqual(
                decoded(reply),
                {"jsonrpc": "2.0", "id": request_id, "result": {"free": 5, "path": "/ws"}},
            )

    def test_deferred_results_stay_deferred(self) -> None:
        pending: Deferred[str] = Deferred()
        dispatcher = Dispatcher({"slow": Method("slow", lambda: pending)})
        reply = dispatcher.answer(b'{"jsonrpc":"2.0","method":"slow","id":1}')
        self.assertIsInstance(reply, Deferred)
        pending.callback("x")
        self.assertEqual(decoded(self.successResultOf(reply))["result"], "x")

    def test_a_batch_mixing_plain_and_deferred_answers(self) -> None:
        pending: Deferred[str] = Deferred()
        methods = {"slow": Method("slow", lambda: pending), "now": Method("now", lambda: 1)}
        reply = Dispatcher(methods).answer(
            b'[{"jsonrpc":"2.0","method":"slow","id":1},{"jsonrpc":"2.0","method":"now","id":2}]'
        )
        assert isinstance(reply, Deferred)
        pending.callback("x")
        self.assertEqual([m["id"] for m in json.loads(self.successResultOf(reply))], [1, 2])

    def test_a_result_that_cannot_be_encoded_is_an_internal_error_naming_it(self) -> None:
        methods = {
            "bad_text": Method("bad_text", lambda: {"location": "/x\udcff"}),
            "bad_number": Method("bad_number", lambda: [float("inf")]),
            "bad_type": Method("bad_type", lambda: {"when": object()}),
        }
        dispatcher = Dispatcher(methods)
        for name, where in [("bad_text", "the result.location holds a lone surrogate"),
                            ("bad_number", "the result[0] is a number too large"),
                            ("bad_type", "the result.when is a object")]:  # fmt: skip
            reply = json.loads(
                dispatcher.answer(f'{{"jsonrpc":"2.0","method":"{name}","id":1}}'.encode())
            )  # type: ignore[arg-type]
            self.assertEqual((reply["id"], reply["error"]["code"]), (1, -32603))
            self.assertIn(where, reply["error"]["message"])

    def test_an_error_quoting_unencodable_text_is_still_sent(self) -> None:
        def refuse(text: str) -> None:
            raise DaqError(f"unknown DAQ id {text!r}", text)

        dispatcher = Dispatcher(
            {"refuse": Method("refuse", refuse, (Param("text", string_param),))}, translate_error
        )
        # The dispatcher refuses surrogates in requests; a handler's message may still hold
        # one, from a value that got into the server some other way.
        error_reply = dispatcher.answer(
            b'{"jsonrpc":"2.0","method":"refuse","params":["x"],"id":1}'
        )
        self.assertIn("unknown DAQ id 'x'", json.loads(error_reply)["error"]["message"])  # type: ignore[arg-type]
        line = error_line(1, RpcError(-32000, "unknown DAQ id '\udcff'", {"id": "\udcff"}))
        self.assertEqual(json.loads(line)["error"]["message"], "unknown DAQ id '\\udcff'")


class Session:
    def __init__(self, role: Any, identity: str) -> None:
        self.role = role
        self.identity = identity


class AuthorisationTests(SynchronousTestCase):
    def setUp(self) -> None:
        calls = self.calls = []  # type: ignore[var-annotated]
        methods = [
            Method(name, lambda name=name: calls.append(name) or "ok")  # type: ignore[misc]
            for name in ["/daq/QueueDaq", "/daq/GetDaqStatus", "/daq/GetActiveDaqs", "/dpm/Exit",
                         "/dpm/QueryStorageStatus", "Subscribe", "Unsubscribe", "/daq/AbortDaq"]
        ]  # fmt: skip
        self.dispatcher = Dispatcher({method.name: method for method in methods})

    def call(self, method: str, session: Any, notification: bool = False) -> Any:
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if not notification:
            request["id"] = 1
        reply = self.dispatcher.answer(json.dumps(request).encode(), session)
        return None if reply is None else decoded(reply)

    def test_a_reader_may_read_and_subscribe_only(self) -> None:
        reader = Session(Role.READ, "ops.example.org")
        for method in ["/daq/GetDaqStatus", "/daq/GetActiveDaqs", "/dpm/QueryStorageStatus",
                       "Subscribe", "Unsubscribe"]:  # fmt: skip
            self.assertEqual(self.call(method, reader)["result"], "ok", method)
        for method in ["/daq/QueueDaq", "/dpm/Exit", "/daq/AbortDaq"]:
            error = self.call(method, reader)["error"]
            self.assertEqual(error["code"], -32001)
            self.assertEqual(
                error["message"], f"not authorised: ops.example.org may not call {method}"
            )
        self.assertIsNone(self.call("/dpm/Exit", reader, notification=True))
        self.assertNotIn("/dpm/Exit", self.calls)

    def test_a_controller_and_an_unauthenticated_local_session_may_call_everything(self) -> None:
        for session in (Session(Role.CONTROL, "ocm"), None, "plain"):
            self.assertEqual(self.call("/daq/QueueDaq", session)["result"], "ok")

    def test_a_session_whose_role_is_not_known_yet_may_call_nothing(self) -> None:
        self.assertEqual(
            self.call("/daq/GetActiveDaqs", Session(None, ""))["error"]["code"], -32001
        )
