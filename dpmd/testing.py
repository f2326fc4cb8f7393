"""Public test helpers: in-memory sessions, a fake process reactor, a JSON client.

They live in the package (not under ``tests/``) so that projects embedding
dpmd can test against the same fakes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any, AnyStr, cast

from twisted.internet.defer import Deferred, DeferredQueue, maybeDeferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessProtocol, IProcessTransport, IReactorProcess
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.protocol import JsonRpcProtocol
from dpmd.topics import TopicHub


def synchronous(function: Any, *args: Any) -> Deferred[Any]:
    """A ``run_blocking`` that runs at once: for tests that fake threads away."""
    return maybeDeferred(function, *args)


def connect_session(
    dispatcher: Dispatcher,
    hub: TopicHub | None = None,
    max_line_bytes: int = 1 << 20,
    max_in_flight: int = 64,
) -> tuple[JsonRpcProtocol, StringTransport]:
    """A session over a ``StringTransport`` (its ``value()`` is what the client got)."""
    session = JsonRpcProtocol(dispatcher, hub or TopicHub(), max_line_bytes, max_in_flight)
    transport = StringTransport()
    session.makeConnection(transport)
    return session, transport


def written_messages(transport: StringTransport) -> list[Any]:
    """Decode and clear what the server wrote: one JSON value per line."""
    lines = transport.value().splitlines()
    transport.clear()
    return [json.loads(line) for line in lines]


class JsonLineClient(Protocol):
    """A plain client for real-socket tests: send objects, await messages in order."""

    def __init__(self) -> None:
        self.messages: DeferredQueue[Any] = DeferredQueue()
        self.closed: Deferred[None] = Deferred()
        self._buffer = b""

    def send(self, message: Any) -> None:
        self.send_raw(json.dumps(message).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        assert self.transport is not None, "connected"
        self.transport.write(data)

    def next_message(self) -> Deferred[Any]:
        return self.messages.get()

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.messages.put(json.loads(line))

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


SHIM_ARGUMENTS = 6
"""``spawnProcess`` arguments before the real argv: python -S -I -c SHIM PARENT-PID."""


@dataclass
class FakeProcess:
    """A child that ``FakeProcessReactor.spawnProcess`` pretended to start."""

    protocol: ProcessProtocol
    args: list[str]
    environment: dict[str, str]
    child_fds: dict[int, Any]
    pid: int
    signals: list[int] = field(default_factory=list)
    ended: bool = False
    stdin: bytearray = field(default_factory=bytearray)
    """What the server wrote to the child's stdin (and the test has not taken yet)."""

    @property
    def argv(self) -> list[str]:
        """The command the server meant to run (without the process-group shim)."""
        return self.args[SHIM_ARGUMENTS:]

    def write_json(self, message: Any) -> None:
        self.protocol.childDataReceived(1, json.dumps(message).encode() + b"\n")

    def write_stderr(self, data: bytes) -> None:
        self.protocol.childDataReceived(2, data)

    def exit(self, code: int = 0) -> None:
        self.ended = True
        reason = ProcessDone(0) if code == 0 else ProcessTerminated(exitCode=code)
        self.protocol.processEnded(Failure(reason))

    def killed(self, signal: int) -> None:
        self.ended = True
        self.protocol.processEnded(Failure(ProcessTerminated(signal=signal)))


class _FakeProcessTransport:
    def __init__(self, process: FakeProcess) -> None:
        self._process = process
        self.pid = process.pid

    def signalProcess(self, signal: int) -> None:
        self._process.signals.append(signal)

    def write(self, data: bytes) -> None:
        self._process.stdin += data

    def closeStdin(self) -> None:
        """A fake child reads its stdin only when the test says so."""

    def loseConnection(self) -> None:
        """Fake children end only when the test says so."""


@implementer(IReactorProcess)
class FakeProcessReactor(MemoryReactorClock):
    """A fake clock that also 'spawns' processes the test then drives by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.processes: list[FakeProcess] = []
        self._pids = count(4_000_000)

    def spawnProcess(
        self,
        processProtocol: IProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str],
        env: Mapping[AnyStr, AnyStr] | None = None,
        path: bytes | str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        usePTY: bool = False,
        childFDs: Mapping[int, int | str] | None = None,
    ) -> IProcessTransport:
        protocol = cast(ProcessProtocol, processProtocol)
        environment = {os.fsdecode(key): os.fsdecode(value) for key, value in (env or {}).items()}
        process = FakeProcess(protocol, [os.fsdecode(arg) for arg in args], environment,
                              dict(childFDs or {}), next(self._pids))  # fmt: skip
        self.processes.append(process)
        transport = _FakeProcessTransport(process)
        protocol.makeConnection(transport)
        return cast(IProcessTransport, transport)  # the part of it that dpmd uses

    def running_processes(self) -> list[FakeProcess]:
        return [process for process in self.processes if not process.ended]


class GroupSignals:
    """A ``kill_group`` for ``ProcessRunner`` that records instead of signalling."""

    def __init__(self, reactor: FakeProcessReactor) -> None:
        self._reactor = reactor

    def __call__(self, pid: int, signal: int) -> None:
        for process in self._reactor.processes:
            if process.pid == pid:
                process.signals.append(signal)
