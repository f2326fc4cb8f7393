"""A minimal JSON-RPC caller over ``JsonLineClient`` for server tests.

It keeps notifications apart from responses, so a test can await the answer
to one call while status notifications keep arriving.
"""

from __future__ import annotations

from itertools import count
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from dpmd.config import build_config
from dpmd.tap import build_service
from dpmd.testing import JsonLineClient


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.code = error["code"]
        self.data = error.get("data")


class Caller(JsonLineClient):
    def __init__(self) -> None:
        super().__init__()
        self._ids = count(1)
        self._pending: dict[int, Deferred[Any]] = {}
        self.notifications: list[dict[str, Any]] = []

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        request_id = next(self._ids)
        self._pending[request_id] = Deferred()
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)})
        return self._pending[request_id]

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        while self.messages.pending:
            message = self.messages.pending.pop(0)
            if "id" not in message:
                self.notifications.append(message["params"])
                continue
            waiter = self._pending.pop(message["id"])
            if "error" in message:
                waiter.errback(RpcError(message["error"]))
            else:
                waiter.callback(message["result"])

    def statuses(self, daq_id: str) -> list[dict[str, Any]]:
        return [n for n in self.notifications if n.get("id") == daq_id]

    @inlineCallbacks
    def wait_for(self, daq_id: str, substate: str, timeout: float = 60) -> Any:
        """Poll the notifications until the DAQ reports ``substate``."""
        for _ in range(int(timeout / 0.02)):
            seen = [n for n in self.statuses(daq_id) if n["substate"] == substate]
            if seen:
                return seen[-1]
            yield deferLater(reactor, 0.02, lambda: None)
        raise AssertionError(f"{daq_id} never reached {substate}: {self.statuses(daq_id)}")

    @inlineCallbacks
    def wait_archived(self, daq_id: str, timeout: float = 60) -> Any:
        """Poll the internal status until the DAQ is archived and its folder filed away
        (it moves to ``archive/`` off the reactor, after the final record's commit)."""
        for _ in range(int(timeout / 0.02)):
            internal = yield self.call("/daq/GetInternalDaqStatus", daq_id)
            detail = internal["detail"]
            if detail["archived"] and Path(detail["workspace"]).parent.name == "archive":
                return internal
            yield deferLater(reactor, 0.02, lambda: None)
        raise AssertionError(f"{daq_id} was not archived")


@inlineCallbacks
def connect(port: int) -> Any:
    caller = Caller()
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), caller)
    return caller


@inlineCallbacks
def start_server(test: TestCase, root: Path, **values: Any) -> Any:
    """An in-process dpmd on port 0 of the test's reactor, and a caller subscribed to
    ``/daq/status``; both are stopped when the test ends."""
    settings = {"dataroot": str(root), "listen": ["tcp:0:interface=127.0.0.1"], **values}
    service = build_service(build_config(settings, environ={}), reactor)
    service.startService()
    test.addCleanup(service.stopService)
    caller: Caller = yield connect(service.ports[0].getHost().port)
    test.addCleanup(caller.transport.loseConnection)
    yield caller.call("Subscribe", "/daq/status")
    return service, caller
