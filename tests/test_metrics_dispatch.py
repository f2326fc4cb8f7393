"""The dispatcher's observer: every request's method, outcome and time on the server's clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dpmd.access import Role
from dpmd.api import translate_error
from dpmd.metrics.families import RpcMetrics
from dpmd.model import DaqError
from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.errors import INVALID_PARAMS, RpcError
from dpmd.rpc.methods import Method, Param, string_param


@dataclass
class ReadOnly:
    role: Role = Role.READ
    identity: str = "reader"


class ObservedDispatcher(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.seen: list[tuple[str | None, str, float]] = []
        self.pending: Deferred[str] = Deferred()
        self.methods = {method.name: method for method in (
            Method("/daq/GetEcho", lambda text: text, (Param("text", string_param),)),
            Method("/daq/Slow", lambda: self.pending),
            Method("/daq/Refuse", self.refuse),
            Method("/daq/Picky", self.picky),
            Method("/daq/Boom", lambda: 1 / 0),
        )}  # fmt: skip
        self.dispatcher = Dispatcher(self.methods, translate_error, observe=self.observe,
                                     clock=self.clock)  # fmt: skip

    def observe(self, method: str | None, outcome: str, seconds: float) -> None:
        self.seen.append((method, outcome, seconds))

    def refuse(self) -> Deferred[None]:
        refusal: Deferred[None] = Deferred()
        self.clock.callLater(0.5, refusal.errback, DaqError("unknown DAQ id 'X'", "X"))
        return refusal

    def picky(self) -> None:
        raise RpcError(INVALID_PARAMS, "not like that")

    def call(self, line: str | bytes, session: Any = None) -> Any:
        raw = line.encode() if isinstance(line, str) else line
        reply = self.successResultOf(self.dispatcher.dispatch(raw, session))
        return None if reply is None else json.loads(reply)

    def request(self, method: str, *params: Any, request_id: int = 1) -> str:
        return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method,
                           "params": list(params)})  # fmt: skip

    def test_a_plain_answer_is_ok_at_once(self) -> None:
        self.assertEqual(self.call(self.request("/daq/GetEcho", "hi"))["result"], "hi")
        self.assertEqual(self.seen, [("/daq/GetEcho", "ok", 0.0)])

    def test_a_deferred_is_timed_until_it_fires(self) -> None:
        reply = self.dispatcher.dispatch(self.request("/daq/Slow").encode())
        self.clock.advance(2.5)
        self.assertEqual(self.seen, [])
        self.pending.callback("done")
        self.assertEqual(json.loads(self.successResultOf(reply))["result"], "done")
        self.assertEqual(self.seen, [("/daq/Slow", "ok", 2.5)])

    def test_a_daq_exception_is_its_code(self) -> None:
        reply = self.dispatcher.dispatch(self.request("/daq/Refuse").encode())
        self.clock.advance(0.5)
        self.assertEqual(json.loads(self.successResultOf(reply))["error"]["code"], -32000)
        self.assertEqual(self.seen, [("/daq/Refuse", "-32000", 0.5)])

    def test_a_raised_rpc_error_and_an_internal_error(self) -> None:
        self.call(self.request("/daq/Picky"))
        self.call(self.request("/daq/Boom"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.seen, [("/daq/Picky", "-32602", 0.0),
                                     ("/daq/Boom", "-32603", 0.0)])  # fmt: skip

    def test_refusals_before_any_handler_ran(self) -> None:
        self.call(self.request("/daq/Nope"))
        self.call(self.request("/daq/GetEcho", 42))
        self.call(self.request("/daq/Slow"), ReadOnly())
        self.call(b"{not json")
        self.call("[]")
        self.call("[1]")
        self.call(json.dumps({"jsonrpc": "1.0", "id": 1, "method": "/daq/GetEcho"}))
        self.call(json.dumps({"jsonrpc": "2.0", "id": [1], "method": ["a"]}))
        self.assertEqual(self.seen, [
            (None, "-32601", 0.0),
            ("/daq/GetEcho", "-32602", 0.0),
            ("/daq/Slow", "-32001", 0.0),
            (None, "-32700", 0.0),
            (None, "-32600", 0.0),
            (None, "-32600", 0.0),
            ("/daq/GetEcho", "-32600", 0.0),
            (None, "-32600", 0.0),
        ])  # fmt: skip

    def test_each_request_of_a_batch_and_notifications(self) -> None:
        batch = [json.loads(self.request("/daq/GetEcho", "a", request_id=n)) for n in (1, 2)]
        batch.append({"jsonrpc": "2.0", "method": "/daq/GetEcho", "params": ["note"]})
        self.assertEqual(len(self.call(json.dumps(batch))), 2)
        self.assertEqual(self.seen, [("/daq/GetEcho", "ok", 0.0)] * 3)

    def test_an_observer_needs_a_clock(self) -> None:
        error = self.assertRaises(ValueError, Dispatcher, self.methods, observe=self.observe)
        self.assertIn("clock", str(error))


class Unobserved(SynchronousTestCase):
    def test_without_an_observer_the_handlers_are_the_tables_own(self) -> None:
        def echo(text: str) -> str:
            return text

        dispatcher = Dispatcher({"echo": Method("echo", echo, (Param("text", string_param),))})
        self.assertIs(dispatcher._methods["echo"].handler, echo)
        reply = dispatcher.answer(b'{"jsonrpc":"2.0","id":1,"method":"echo","params":["x"]}')
        self.assertEqual(reply, b'{"jsonrpc":"2.0","id":1,"result":"x"}')


class RpcFamilies(SynchronousTestCase):
    def test_counts_by_method_and_outcome_and_other_for_unknown_methods(self) -> None:
        registry = CollectorRegistry()
        metrics = RpcMetrics(registry, ["/daq/QueueDaq"])
        metrics.observe("/daq/QueueDaq", "ok", 0.002)
        metrics.observe("/daq/QueueDaq", "-32000", 0.001)
        metrics.observe(None, "-32601", 0.0)
        count = "dpmd_rpc_request_duration_seconds_count"
        get = registry.get_sample_value
        self.assertEqual(get(count, {"method": "/daq/QueueDaq", "outcome": "ok"}), 1)
        self.assertEqual(get(count, {"method": "/daq/QueueDaq", "outcome": "-32000"}), 1)
        self.assertEqual(get(count, {"method": "other", "outcome": "-32601"}), 1)
        self.assertEqual(get("dpmd_rpc_request_duration_seconds_bucket",
                             {"method": "/daq/QueueDaq", "outcome": "ok", "le": "0.001"}), 0)
        self.assertEqual(get("dpmd_rpc_request_duration_seconds_bucket",
                             {"method": "/daq/QueueDaq", "outcome": "ok", "le": "0.0025"}), 1)
