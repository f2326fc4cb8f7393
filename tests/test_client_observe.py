"""The extension methods of both clients: provenance, timeline, dry run, workspace audit.

The server is ``tests.cannedpeer``: a real JSON-RPC server on a real TCP or
UNIX socket in this process that answers with canned data shaped as the
contract documents them (a legitimate fake of the remote peer: the client's
own code is all real).  ``tests.test_dpmctl_observe`` runs the same methods
against a real dpmd.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dpmd.client import DaqError, ProtocolError, aio, connect
from dpmd.client.models import (
    CardOrigin,
    DaqCheck,
    PlannedHdu,
    StageRun,
    Timeline,
    WorkspaceAudit,
    card_origins,
)
from tests.cannedpeer import (
    AUDIT,
    CHECK_BAD,
    CHECK_OK,
    PROVENANCE,
    T0,
    TIMELINE,
    listen_canned,
    refusal,
)
from tests.test_client_aio import failure_of, in_asyncio
from tests.test_client_support import short_directory

ANSWERS = {
    "/daq/GetDaqProvenance": PROVENANCE,
    "/daq/GetTimeline": TIMELINE,
    "/daq/CheckDaq": CHECK_OK,
    "/dpm/AuditWorkspace": AUDIT,
}
SPECIFICATION = {"id": "TEST.1", "sources": []}


class TwistedClientTests(TestCase):
    @inlineCallbacks
    def client_of(self, answers: dict[str, Any], unix: bool = False) -> Any:
        path = str(short_directory(self) / "dpm.sock") if unix else None
        peer = yield listen_canned(self, answers, path)
        client = yield connect(peer.endpoint, reactor)
        self.addCleanup(client.close)
        return peer, client

    @inlineCallbacks
    def check_every_method(self, unix: bool) -> Any:
        peer, client = yield self.client_of(ANSWERS, unix)
        origins = yield client.get_daq_provenance("TEST.1")
        self.assertTrue(all(isinstance(origin, CardOrigin) for origin in origins))
        self.assertEqual([origin.to_json() for origin in origins], PROVENANCE)
        self.assertEqual(origins[1].overrode[0].source, "fcs")
        timeline = yield client.get_timeline(T0, T0 + 86400.5, 50)
        self.assertIsInstance(timeline, Timeline)
        self.assertEqual(timeline.to_json(), TIMELINE)
        self.assertEqual(timeline.daqs[1].stages["merging"].seconds, 4.0)
        self.assertIsNone(timeline.daqs[3].stages["releasing"].seconds)  # still running
        check = yield client.check_daq(SPECIFICATION)
        self.assertIsInstance(check, DaqCheck)
        self.assertEqual(check.to_json(), CHECK_OK)
        audit = yield client.audit_workspace(repair=True)
        self.assertIsInstance(audit, WorkspaceAudit)
        self.assertEqual(audit.to_json(), AUDIT)
        self.assertEqual([problem.kind for problem in audit.unrepaired], ["product-changed"])
        self.assertEqual(
            [(request["method"], request["params"]) for request in peer.requests],
            [
                ("/daq/GetDaqProvenance", {"id": "TEST.1"}),
                ("/daq/GetTimeline", {"since": T0, "until": T0 + 86400.5, "limit": 50}),
                ("/daq/CheckDaq", {"specification": json.dumps(SPECIFICATION)}),
                ("/dpm/AuditWorkspace", {"repair": True}),
            ],
        )

    def test_every_method_over_tcp(self) -> Any:
        return self.check_every_method(unix=False)

    def test_every_method_over_a_unix_socket(self) -> Any:
        return self.check_every_method(unix=True)

    @inlineCallbacks
    def test_defaults_and_open_ends(self) -> Any:
        peer, client = yield self.client_of(ANSWERS)
        yield client.get_timeline()
        yield client.audit_workspace()
        yield client.check_daq('{"id": "A"}')  # a string goes as it is
        self.assertEqual(
            [request["params"] for request in peer.requests],
            [{"since": None, "until": None, "limit": 1000}, {"repair": False},
             {"specification": '{"id": "A"}'}],
        )  # fmt: skip

    @inlineCallbacks
    def test_a_refusal_is_a_daq_error(self) -> Any:
        message = "DAQ 'TEST.1' has no product header yet: it is not merged"
        _, client = yield self.client_of({"/daq/GetDaqProvenance": refusal(message, "TEST.1")})
        error = yield self.assertFailure(client.get_daq_provenance("TEST.1"), DaqError)
        self.assertEqual((error.id, error.message), ("TEST.1", message))

    @inlineCallbacks
    def test_a_result_of_the_wrong_shape_fails_only_its_call(self) -> Any:
        broken = [{**PROVENANCE[0], "overrode": [{"source": "fcs"}]}]
        answers = {**ANSWERS, "/daq/GetDaqProvenance": broken,
                   "/daq/GetTimeline": {**TIMELINE, "truncated": "no"}}  # fmt: skip
        _, client = yield self.client_of(answers)
        error = yield self.assertFailure(client.get_daq_provenance("TEST.1"), ProtocolError)
        self.assertIn("missing member 'card'", str(error))
        error = yield self.assertFailure(client.get_timeline(), ProtocolError)
        self.assertIn("member 'truncated' must be bool, not str", str(error))
        audit = yield client.audit_workspace()  # the connection carries on
        self.assertEqual(len(audit.problems), 2)

    @inlineCallbacks
    def test_bad_arguments_are_refused_before_sending(self) -> Any:
        peer, client = yield self.client_of(ANSWERS)
        for call in [
            lambda: client.get_timeline(limit=0),
            lambda: client.get_timeline(limit=True),
            lambda: client.get_timeline(since=float("nan")),
            lambda: client.get_timeline(until="yesterday"),
            lambda: client.audit_workspace("yes"),
            lambda: client.check_daq({"id": float("inf")}),
        ]:
            yield self.assertFailure(call(), ValueError)
        self.assertEqual(peer.requests, [])


async def every_method(endpoint: str) -> tuple[Any, ...]:
    client = await aio.connect(endpoint)
    try:
        return (
            await client.get_daq_provenance("TEST.1"),
            await client.get_timeline(until=T0),
            await client.check_daq(SPECIFICATION),
            await client.audit_workspace(),
            await failure_of(client.get_timeline(limit=-1)),
        )
    finally:
        await client.close()


class AsyncioClientTests(TestCase):
    @inlineCallbacks
    def check(self, unix: bool) -> Any:
        path = str(short_directory(self) / "dpm.sock") if unix else None
        peer = yield listen_canned(self, {**ANSWERS, "/daq/CheckDaq": CHECK_BAD}, path)
        origins, timeline, check, audit, refused = yield in_asyncio(every_method, peer.endpoint)
        self.assertEqual([origin.to_json() for origin in origins], PROVENANCE)
        self.assertEqual(timeline.to_json(), TIMELINE)
        self.assertEqual((check.ok, check.problems), (False, tuple(CHECK_BAD["problems"])))
        self.assertEqual(audit.to_json(), AUDIT)
        self.assertIsInstance(refused, ValueError)
        self.assertEqual(
            [request["params"] for request in peer.requests],
            [{"id": "TEST.1"}, {"since": None, "until": T0, "limit": 1000},
             {"specification": json.dumps(SPECIFICATION)}, {"repair": False}],
        )  # fmt: skip

    def test_tcp(self) -> Any:
        return self.check(unix=False)

    def test_unix_socket(self) -> Any:
        return self.check(unix=True)


class ModelTests(SynchronousTestCase):
    def test_planned_hdus_in_the_mergers_own_form(self) -> None:
        """dpmd's CheckDaq passes on the merger's plan entries; they read the same."""
        hdu = PlannedHdu.from_json({"index": 1, "origin": "dcs", "kind": "IMAGE",
                                    "extname": "CHIP1", "header_size": 2880,
                                    "data_size": 66240})  # fmt: skip
        self.assertEqual(hdu, PlannedHdu(1, "CHIP1", "dcs", 69120, "IMAGE"))
        primary = PlannedHdu.from_json({"index": 0, "origin": "(new)", "kind": "PRIMARY",
                                        "extname": None, "header_size": 2880,
                                        "data_size": 0})  # fmt: skip
        self.assertEqual((primary.name, primary.bytes), ("PRIMARY", 2880))

    def test_shapes_are_checked(self) -> None:
        self.assertRaises(TypeError, card_origins, {"cards": []})
        self.assertRaises(TypeError, card_origins, [{**PROVENANCE[0], "rule": True}])
        self.assertRaises(TypeError, StageRun.from_json, {"attempts": "1"})
        self.assertRaises(ValueError, DaqCheck.from_json, {"ok": True})
        self.assertRaises(TypeError, DaqCheck.from_json, {**CHECK_BAD, "problems": [1]})
        self.assertRaises(TypeError, DaqCheck.from_json, {**CHECK_BAD, "notes": [None]})

    def test_a_stage_run_without_a_peak_has_none(self) -> None:
        """A server (or a stored record) older than the peak memory: unknown."""
        run = StageRun.from_json({"attempts": 1, "started_at": 1.0, "ended_at": 2.0})
        self.assertIsNone(run.peak_rss_bytes)
        self.assertRaises(TypeError, StageRun.from_json, {"attempts": 1, "peak_rss_bytes": "1"})

    def test_a_check_without_notes_has_none(self) -> None:
        """A server older than ``notes`` is read as having none to give."""
        older = {key: value for key, value in CHECK_OK.items() if key != "notes"}
        self.assertEqual(DaqCheck.from_json(older).notes, ())

    def test_unknown_members_are_ignored(self) -> None:
        entry = {**PROVENANCE[1], "confidence": "high"}
        self.assertEqual(CardOrigin.from_json(entry).to_json(), PROVENANCE[1])
