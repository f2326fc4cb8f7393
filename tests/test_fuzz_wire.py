"""Property-based fuzzing of the dispatcher and the framing: whatever a client sends,
every request is answered (a notification is not), with the right code, and other
clients keep being served."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from dpmd.api import translate_error
from dpmd.model import DaqError
from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.methods import Method, Param, string_param
from dpmd.testing import connect_session, written_messages
from dpmd.topics import TopicHub

CODES = {-32700, -32600, -32601, -32602, -32603, -32000, -32001}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples in every run: the suite stays deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def refuse(id: str) -> None:
    raise DaqError(f"unknown DAQ id {id!r}", id)


def methods() -> dict[str, Method]:
    table = [
        Method("/daq/GetDaqStatus", refuse, (Param("id", string_param),)),
        Method("echo", lambda value: value, (Param("value", lambda value: value),)),
        Method("later", lambda: Deferred()),
        Method("boom", lambda: 1 / 0),
        Method("/daq/GetActiveDaqs", lambda: []),
    ]
    return {method.name: method for method in table}


# Text of every code point, lone surrogates included (hypothesis leaves them out by default).
any_text = st.one_of(
    st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None)),
    st.builds(  # a lone surrogate in ordinary text, far likelier than by chance
        lambda head, surrogate, tail: head + surrogate + tail,
        st.text(max_size=3),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=None),
        st.text(max_size=3),
    ),
)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, any_text),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(any_text, children, max_size=5)
    ),
    max_leaves=30,
)
request_ids = st.one_of(st.none(), st.booleans(), numbers, any_text, st.lists(numbers, max_size=2))
method_names = st.one_of(st.sampled_from(sorted(methods())), any_text)
requests = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0"]), "method": method_names},
    optional={
        "id": request_ids,
        "params": st.one_of(json_values, st.lists(json_values, max_size=3)),
    },
)
# Literals json.dumps never writes: numbers out of range, very long numbers.
odd_literals = st.sampled_from([b"1e400", b"-1e400", b"9" * 5000, b"1" + b"0" * 400 + b".5"])


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def echoable_id(value: Any) -> bool:
    """The id a reply carries back: strings must be Unicode text, numbers finite."""
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return encodable(value)
    return isinstance(value, int | float)


class DispatcherFuzzTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dispatcher = Dispatcher(methods(), translate_error)

    def answer(self, line: bytes) -> Any:
        reply = self.dispatcher.answer(line)
        if isinstance(reply, Deferred):
            if not reply.called:
                return "pending"
            reply = self.successResultOf(reply)
        self.flushLoggedErrors(ZeroDivisionError)
        if reply is None:
            return None
        self.assertIsInstance(reply, bytes)
        self.assertNotIn(b"\n", reply)
        return json.loads(reply.decode("utf-8"))

    def assertErrorShape(self, reply: Any) -> None:
        self.assertEqual(reply["jsonrpc"], "2.0")
        self.assertIn(reply["error"]["code"], CODES)
        self.assertIsInstance(reply["error"]["message"], str)

    @FUZZ
    @given(st.binary(max_size=300))
    def test_random_bytes_are_answered_or_silently_a_notification(self, line: bytes) -> None:
        reply = self.answer(line)
        if isinstance(reply, dict) and "error" in reply:
            self.assertErrorShape(reply)

    @FUZZ
    @given(requests)
    def test_every_request_is_answered_with_its_id_and_a_known_code(self, request: Any) -> None:
        line = json.dumps(request).encode()  # ASCII: lone surrogates travel as \\udcxx escapes
        reply = self.answer(line)
        if reply == "pending":
            self.assertEqual(request["method"], "later")
            return
        if "id" not in request:
            if reply is not None:  # an invalid request cannot be told from a notification
                self.assertEqual((reply["id"], reply["error"]["code"]), (None, -32600))
            return
        self.assertIsNotNone(reply, request)
        if "error" in reply:
            self.assertErrorShape(reply)
        if echoable_id(request["id"]) and not (
            "error" in reply and reply["error"]["code"] == -32600 and reply["id"] is None
        ):
            self.assertEqual(reply["id"], request["id"])
        elif not echoable_id(request["id"]):
            self.assertIsNone(reply["id"])
            self.assertEqual(reply["error"]["code"], -32600)

    @FUZZ
    @given(st.lists(requests, min_size=1, max_size=8))
    def test_batches_answer_each_request_that_has_an_id(self, batch: list[Any]) -> None:
        reply = self.answer(json.dumps(batch).encode())
        if reply == "pending":
            return
        wanted = sum("id" in request for request in batch)
        if reply is None:
            self.assertEqual(wanted, 0)
            return
        self.assertIsInstance(reply, list)
        self.assertGreaterEqual(len(reply), wanted)
        for one in reply:
            if "error" in one:
                self.assertErrorShape(one)

    @FUZZ
    @given(st.integers(min_value=1, max_value=3000), st.sampled_from([b"[", b'{"a":']))
    def test_any_nesting_is_answered(self, depth: int, opener: bytes) -> None:
        closer = b"]" if opener == b"[" else b"}"
        line = opener * depth + b"1" + closer * depth
        reply = self.answer(line)
        if depth > 128:
            self.assertEqual((reply["id"], reply["error"]["code"]), (None, -32700))

    @FUZZ
    @given(odd_literals, st.sampled_from(["id", "params"]))
    def test_numbers_out_of_range_are_refused_naming_where(
        self, literal: bytes, where: str
    ) -> None:
        if where == "id":
            line = b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":' + literal + b"}"
        else:
            line = b'{"jsonrpc":"2.0","method":"echo","params":[' + literal + b'],"id":7}'
        reply = self.answer(line)
        self.assertErrorShape(reply)
        if reply["error"]["code"] != -32700:  # a number past the digit limit is a parse error
            self.assertIn("too large" if where == "id" else "params[0]", reply["error"]["message"])


class FramingFuzzTests(SynchronousTestCase):
    @FUZZ
    @given(st.lists(st.binary(max_size=200), max_size=10))
    def test_garbage_on_one_connection_never_stops_another(self, chunks: list[bytes]) -> None:
        hub = TopicHub()
        dispatcher = Dispatcher(methods(), translate_error)
        hostile, _ = connect_session(dispatcher, hub, max_line_bytes=1024)
        bystander, transport = connect_session(dispatcher, hub, max_line_bytes=1024)
        for chunk in chunks:
            hostile.dataReceived(chunk)
            bystander.dataReceived(b'{"jsonrpc":"2.0","method":"/daq/GetActiveDaqs","id":1}\n')
            answered = written_messages(transport)
            self.assertEqual(answered, [{"jsonrpc": "2.0", "id": 1, "result": []}])
        hostile.readConnectionLost()
        self.flushLoggedErrors(ZeroDivisionError)

    @FUZZ
    @given(st.lists(st.binary(max_size=100).filter(lambda b: b"\n" not in b), max_size=20))
    def test_each_line_of_garbage_is_answered_or_a_notification(self, lines: list[bytes]) -> None:
        session, transport = connect_session(Dispatcher(methods(), translate_error), TopicHub())
        session.dataReceived(b"".join(line + b"\n" for line in lines))
        session.dataReceived(b'{"jsonrpc":"2.0","method":"/daq/GetActiveDaqs","id":"last"}\n')
        replies = written_messages(transport)
        self.assertEqual(replies[-1], {"jsonrpc": "2.0", "id": "last", "result": []})
        self.flushLoggedErrors(ZeroDivisionError)
