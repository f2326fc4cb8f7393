"""A canned dpmd: a real JSON-RPC server on a socket that answers with fixed data.

It is a fake of the *remote peer*, not of anything in the client: the
client's real connectors, session and decoding talk to it over a real TCP or
UNIX socket, exactly as they talk to dpmd.  It knows nothing of dpmd's own
server code, so what the client is tested against is the contract
(shared/protocol.md) and the shapes written below, which are those the
extension methods document:

* ``/daq/GetDaqProvenance(id)`` → ``[{"keyword", "card", "source",
  "overrode": [{"source", "card"}], "rule": int|null}]``;
* ``/daq/GetTimeline(since, until, limit)`` → ``{"daqs": [{"id", "substate",
  "queued_at", "started_at", "finished_at", "stages": {name: {"attempts",
  "started_at", "ended_at", "last_error", "bytes", "peak_rss_bytes"}}}],
  "truncated": bool}``;
* ``/daq/CheckDaq(specification)`` → ``{"ok", "problems": [str], "header":
  [provenance entries], "hdus": [{"index", "name", "source", "bytes"}],
  "predicted_bytes", "notes": [str]}``;
* ``/dpm/AuditWorkspace(repair)`` → ``{"problems": [{"kind", "path",
  "detail", "repaired"}]}``.

This module has no tests of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def card(text: str) -> str:
    """A header record as the wire gives it: 80 characters, blank-padded."""
    return text.ljust(80)


LONG_CARD = card("LONGSTR = 'a long string value that goes on and on and on and on &'")
LONG_CARD += card("CONTINUE  'and ends here'")
PROVENANCE = [
    {"keyword": "SIMPLE", "card": card("SIMPLE  =                    T / FITS standard"),
     "source": "(dpmd-merge)", "overrode": [], "rule": None},
    {"keyword": "OBJECT", "card": card("OBJECT  = 'ocm object'"), "source": "ocm",
     "overrode": [{"source": "fcs", "card": card("OBJECT  = 'fcs object'")},
                  {"source": "dcs", "card": card("OBJECT  = 'dcs object'")}],
     "rule": None},
    {"keyword": "HIERARCH ESO INS2 FILT1 NAME",
     "card": card("HIERARCH ESO INS2 FILT1 NAME = 'R       '"), "source": "fcs", "overrode": [],
     "rule": 1},
    {"keyword": "LONGSTR", "card": LONG_CARD, "source": "dcs", "overrode": [], "rule": None},
    {"keyword": "HISTORY", "card": card("HISTORY first step"), "source": "ocm", "overrode": [],
     "rule": None},
    {"keyword": "HISTORY", "card": card("HISTORY second step"), "source": "dcs", "overrode": [],
     "rule": None},
]  # fmt: skip


def run(attempts: int, started: float | None, ended: float | None, size: int | None,
        error: str | None = None, peak: int | None = None) -> dict[str, Any]:  # fmt: skip
    return {"attempts": attempts, "started_at": started, "ended_at": ended, "last_error": error,
            "bytes": size, "peak_rss_bytes": peak}  # fmt: skip


TIMELINE = {
    "daqs": [
        {"id": "NIGHT.1", "substate": "Completed", "queued_at": T0, "started_at": T0 + 1,
         "finished_at": T0 + 20,
         "stages": {"collecting": run(1, T0 + 1, T0 + 3, 2048),
                    "merging": run(1, T0 + 3, T0 + 5, 2048, peak=50 << 20),
                    "releasing": run(1, T0 + 5, T0 + 20, 4096, peak=12 << 20)}},
        {"id": "NIGHT.2", "substate": "Completed", "queued_at": T0 + 60, "started_at": T0 + 61,
         "finished_at": T0 + 3661,
         "stages": {"collecting": run(1, T0 + 61, T0 + 62, 1024),
                    "merging": run(2, T0 + 3651, T0 + 3655, 4096, "merger exited with 5",
                                   peak=80 << 20),
                    "releasing": run(1, T0 + 3655, T0 + 3661, 8192)}},
        {"id": "NIGHT.3", "substate": "Aborted", "queued_at": T0 + 100, "started_at": T0 + 101,
         "finished_at": T0 + 200,
         "stages": {"collecting": run(1, T0 + 101, T0 + 102, 0),
                    "merging": run(1, T0 + 102, T0 + 112, 10240)}},
        {"id": "NIGHT.4", "substate": "Releasing", "queued_at": T0 + 300, "started_at": T0 + 301,
         "finished_at": None,
         "stages": {"collecting": run(1, T0 + 301, T0 + 302, None),
                    "merging": run(1, T0 + 302, T0 + 303, None),
                    "releasing": run(1, T0 + 303, None, None)}},
    ],
    "truncated": False,
}  # fmt: skip
CHECK_OK = {
    "ok": True,
    "problems": [],
    "header": PROVENANCE[:3],
    "hdus": [
        {"index": 0, "name": "PRIMARY", "source": "(dpmd-merge)", "bytes": 5760},
        {"index": 1, "name": "CHIP1", "source": "dcs", "bytes": 69120},
    ],
    "predicted_bytes": 74880,
    "notes": [],
}
CHECK_KNOWN = {
    **CHECK_OK,
    "notes": ["DAQ id 'TEST.1' is already queued (Scheduled) with this very specification: "
              "QueueDaq would accept it again idempotently and queue nothing new"],
}
CHECK_BAD = {
    "ok": False,
    "problems": [
        "source 'dcs': file '/data/dcs.fits' does not exist",
        "the product needs about 74880 bytes; the workspace has 0 above its reserve (1024 free)",
    ],
    "header": [],
    "hdus": [],
    "predicted_bytes": 74880,
    "notes": [],
}
AUDIT = {
    "problems": [
        {"kind": "folder-without-record", "path": "/dpm/daqs/STRAY.1",
         "detail": "no DAQ of the store owns it", "repaired": True},
        {"kind": "product-changed", "path": "/dpm/daqs/TEST.1/TEST.1.fits",
         "detail": "size 10 bytes, recorded 12", "repaired": False},
    ]
}  # fmt: skip


@dataclass(frozen=True)
class RpcFailure:
    """An error response instead of a result."""

    code: int
    message: str
    data: Any = None

    def to_json(self) -> dict[str, Any]:
        error = {"code": self.code, "message": self.message}
        return error if self.data is None else {**error, "data": self.data}


def refusal(message: str, daq_id: str = "") -> RpcFailure:
    """The DPM's ``DaqException`` as the contract spells it."""
    data = {"exception": "DaqException", "id": daq_id, "message": message}
    return RpcFailure(-32000, message, data)


class CannedProtocol(LineOnlyReceiver):
    delimiter = b"\n"

    def __init__(self, peer: CannedPeer) -> None:
        self.peer = peer
        self.lost: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        request = json.loads(line)
        self.peer.requests.append(request)
        answer = self.peer.answers.get(request["method"])
        response: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        if answer is None:
            response["error"] = {"code": -32601, "message": f"no method {request['method']}"}
        elif isinstance(answer, RpcFailure):
            response["error"] = answer.to_json()
        else:
            response["result"] = answer
        self.sendLine(json.dumps(response).encode())

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.peer.protocols.remove(self)
        self.lost.callback(None)


@dataclass
class CannedPeer(Factory):
    """Answers ``answers[method]`` (a result, or an ``RpcFailure``); keeps every request."""

    answers: dict[str, Any]
    requests: list[dict[str, Any]] = field(default_factory=list)
    protocols: list[CannedProtocol] = field(default_factory=list)
    endpoint: str = ""

    def buildProtocol(self, addr: Any) -> CannedProtocol:
        protocol = CannedProtocol(self)
        self.protocols.append(protocol)
        return protocol

    def methods(self) -> list[str]:
        return [request["method"] for request in self.requests]


def listen_canned(test: TestCase, answers: dict[str, Any], unix_path: str | None = None) -> Any:
    """A ``CannedPeer`` listening on 127.0.0.1 (or ``unix_path``); a Deferred of it.

    After the test its connections are closed and it stops listening.
    """
    description = f"unix:{unix_path}" if unix_path else "tcp:0:interface=127.0.0.1"
    peer = CannedPeer(dict(answers))

    def listening(port: Any) -> CannedPeer:
        address = port.getHost()
        peer.endpoint = f"unix:{unix_path}" if unix_path else f"tcp:127.0.0.1:{address.port}"

        def stop() -> Deferred[Any]:
            closing = [protocol.lost for protocol in peer.protocols]
            for protocol in list(peer.protocols):
                assert protocol.transport is not None
                protocol.transport.loseConnection()
            return gatherResults([*closing, maybeDeferred(port.stopListening)])

        test.addCleanup(stop)
        return peer

    return serverFromString(reactor, description).listen(peer).addCallback(listening)
