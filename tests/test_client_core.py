"""The sans-I/O client core: bytes in, events out; requests in, bytes out."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from dpmd.client.core import (
    Broken,
    ClientCore,
    Failed,
    Notification,
    Response,
    error_from_json,
)
from dpmd.client.errors import DaqError, ProtocolError, RpcError
from dpmd.model import DaqError as ServerDaqError


def line(message: object) -> bytes:
    return json.dumps(message).encode() + b"\n"


class RequestTests(SynchronousTestCase):
    def test_requests_get_fresh_ids_and_one_line_each(self) -> None:
        core = ClientCore()
        first = core.send_request("/dpm/QueryStorageStatus")
        second = core.send_request("/daq/GetDaqStatus", {"id": "A\nB"})
        self.assertEqual((first, second), (1, 2))
        lines = core.data_to_send().split(b"\n")
        self.assertEqual(lines[-1], b"")  # every message ends with \n, none holds a raw one
        self.assertEqual(
            [json.loads(text) for text in lines[:-1]],
            [
                {"jsonrpc": "2.0", "id": 1, "method": "/dpm/QueryStorageStatus"},
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "/daq/GetDaqStatus",
                    "params": {"id": "A\nB"},
                },
            ],
        )
        self.assertEqual(core.data_to_send(), b"")
        self.assertEqual(core.pending, {1, 2})

    def test_text_is_utf8_not_escaped(self) -> None:
        core = ClientCore()
        core.send_request("m", ["Ångström"])
        self.assertIn("Ångström".encode(), core.data_to_send())

    def test_unencodable_params_queue_nothing(self) -> None:
        core = ClientCore()
        self.assertRaises(ValueError, core.send_request, "m", [float("nan")])
        self.assertRaises(ValueError, core.send_request, "m", [object()])
        self.assertEqual(core.data_to_send(), b"")
        self.assertEqual(core.pending, frozenset())
        self.assertEqual(core.send_request("m"), 1)


class ResponseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.core = ClientCore()
        for _ in range(3):
            self.core.send_request("m")

    def test_out_of_order_responses_match_by_id(self) -> None:
        events = self.core.receive_data(
            line({"jsonrpc": "2.0", "id": 3, "result": "c"})
            + line({"jsonrpc": "2.0", "id": 1, "result": {"a": 1}})
        )
        self.assertEqual(events, [Response(3, "c"), Response(1, {"a": 1})])
        self.assertEqual(self.core.pending, {2})

    def test_bytes_split_anywhere_and_crlf_and_blank_lines(self) -> None:
        data = b'\r\n{"jsonrpc":"2.0","id":2,"result":null}\r\n\n'
        events = []
        for index in range(len(data)):
            events += self.core.receive_data(data[index : index + 1])
        self.assertEqual(events, [Response(2, None)])

    def test_daq_exception_becomes_daq_error(self) -> None:
        [event] = self.core.receive_data(
            line(
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "error": {
                        "code": -32000,
                        "message": "unknown DAQ id 'NOPE'",
                        "data": {
                            "exception": "DaqException",
                            "id": "NOPE",
                            "message": "unknown DAQ id 'NOPE'",
                        },
                    },
                }
            )
        )
        assert isinstance(event, Failed)
        self.assertEqual(event.request_id, 2)
        self.assertIsInstance(event.error, DaqError)
        self.assertIsInstance(event.error, ServerDaqError)
        self.assertEqual((event.error.id, event.error.message), ("NOPE", "unknown DAQ id 'NOPE'"))

    def test_other_errors_become_rpc_errors(self) -> None:
        [event] = self.core.receive_data(
            line(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "error": {"code": -32602, "message": "missing parameter 'id'"},
                }
            )
        )
        assert isinstance(event, Failed)
        assert isinstance(event.error, RpcError)
        self.assertEqual(
            (event.error.code, event.error.message), (-32602, "missing parameter 'id'")
        )
        self.assertIsNone(event.error.data)

    def test_error_objects(self) -> None:
        internal = error_from_json({"code": -32603, "message": "x", "data": {"incident": "ab"}})
        assert isinstance(internal, RpcError)
        self.assertEqual(internal.data, {"incident": "ab"})
        # -32000 without the DaqException data is just an RpcError.
        self.assertIsInstance(error_from_json({"code": -32000, "message": "x"}), RpcError)
        daq = error_from_json(
            {"code": -32000, "message": "bad", "data": {"exception": "DaqException", "id": ""}}
        )
        assert isinstance(daq, DaqError)
        self.assertEqual((daq.id, str(daq)), ("", "bad"))
        for bad in ([], {"code": "1", "message": "x"}, {"code": True, "message": "x"}, {"code": 1}):
            self.assertRaises(ProtocolError, error_from_json, bad)

    def test_notifications(self) -> None:
        events = self.core.receive_data(
            line({"jsonrpc": "2.0", "method": "/dpm/storage", "params": {"free": 1}})
        )
        self.assertEqual(events, [Notification("/dpm/storage", {"free": 1})])
        self.assertEqual(self.core.pending, {1, 2, 3})


class BrokenStreamTests(SynchronousTestCase):
    """Anything the client cannot place ends the stream, failing every pending request."""

    def assert_broken(self, data: bytes, *words: str, max_line_bytes: int = 1000) -> None:
        core = ClientCore(max_line_bytes)
        core.send_request("a")
        core.send_request("b")
        events = core.receive_data(line({"jsonrpc": "2.0", "id": 1, "result": 1}) + data)
        self.assertEqual(events[0], Response(1, 1))
        [broken] = events[1:]
        assert isinstance(broken, Broken)
        self.assertEqual(broken.abandoned, (2,))
        for word in words:
            self.assertIn(word, str(broken.error))
        self.assertEqual(core.pending, frozenset())
        # Whatever comes after is ignored: the framing is lost.
        self.assertEqual(core.receive_data(line({"jsonrpc": "2.0", "id": 2, "result": 1})), [])

    def test_not_json(self) -> None:
        self.assert_broken(b"{oops\n", "not JSON")

    def test_not_utf8(self) -> None:
        self.assert_broken(b'"\xff"\n', "not JSON")

    def test_array(self) -> None:
        self.assert_broken(line([{"jsonrpc": "2.0", "id": 2, "result": 1}]), "list")

    def test_wrong_version(self) -> None:
        self.assert_broken(line({"jsonrpc": "1.0", "id": 2, "result": 1}), "jsonrpc")

    def test_unknown_id(self) -> None:
        self.assert_broken(line({"jsonrpc": "2.0", "id": 9, "result": 1}), "never sent", "9")

    def test_id_answered_twice(self) -> None:
        self.assert_broken(line({"jsonrpc": "2.0", "id": 1, "result": 1}), "never sent")

    def test_boolean_id_is_not_one(self) -> None:
        self.assert_broken(line({"jsonrpc": "2.0", "id": True, "result": 1}), "never sent")

    def test_result_and_error(self) -> None:
        message = {"jsonrpc": "2.0", "id": 2, "result": 1, "error": {"code": 1, "message": ""}}
        self.assert_broken(line(message), "exactly one")

    def test_malformed_error(self) -> None:
        self.assert_broken(line({"jsonrpc": "2.0", "id": 2, "error": "bad"}), "not an object")

    def test_error_with_null_id(self) -> None:
        message = {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32600, "message": "request line longer than 16 bytes"},
        }
        self.assert_broken(line(message), "could not read a request", "longer than 16")

    def test_request_from_the_server(self) -> None:
        self.assert_broken(line({"jsonrpc": "2.0", "id": 5, "method": "x"}), "request")

    def test_message_without_id_or_method(self) -> None:
        self.assert_broken(line({"jsonrpc": "2.0", "params": {}}), "without id or method")

    def test_line_too_long_without_its_end(self) -> None:
        self.assert_broken(b"x" * 1001, "longer than 1000 bytes")

    def test_line_too_long_with_its_end(self) -> None:
        self.assert_broken(b'"' + b"x" * 999 + b'"\n', "longer than 1000 bytes")

    def test_line_at_the_limit_is_fine(self) -> None:
        core = ClientCore(max_line_bytes=40)
        core.send_request("a")
        message = b'{"jsonrpc":"2.0","id":1,"result":"xxxx"}'
        self.assertEqual(len(message), 40)
        self.assertEqual(core.receive_data(message + b"\r\n"), [Response(1, "xxxx")])

    def test_connection_lost_abandons_pending(self) -> None:
        core = ClientCore()
        core.send_request("a")
        core.send_request("b")
        self.assertEqual(core.connection_lost(), (1, 2))
        self.assertEqual(core.receive_data(line({"jsonrpc": "2.0", "id": 1, "result": 1})), [])
