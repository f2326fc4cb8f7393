"""The service tree of one dpmd: listeners, the storage monitor, the workspace lock."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from dpmd.api import DaqControl, DpmControl, Subscriptions, method_table, translate_error
from dpmd.blocking import SerialExecutor
from dpmd.config import Config
from dpmd.daq.manager import DaqManager
from dpmd.lock import WorkspaceLock
from dpmd.logs import get_logger
from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.protocol import JsonRpcFactory
from dpmd.storage import StorageMonitor
from dpmd.topics import TopicHub
from dpmd.workers import ProcessRunner
from dpmd.workspace import Workspace

log = get_logger(__name__)


class StartupError(Exception):
    """The server cannot start; the text is the one line an operator needs."""


class DpmService(MultiService):
    """Everything one dpmd runs, started and stopped as one service."""

    def __init__(self, config: Config, reactor: Any, lock: WorkspaceLock) -> None:
        super().__init__()
        self.config = config
        self._reactor = reactor
        self.lock = lock
        self.hub = TopicHub()

        def run_blocking(function: Any, *args: Any) -> Deferred[Any]:
            return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

        self.storage = StorageMonitor(
            str(config.workspace), reactor, self.hub, config.storage_interval, run_blocking
        )
        self._writer = SerialExecutor(reactor, "dpmd-workspace")
        self.manager = DaqManager(
            config,
            Workspace(config.workspace),
            self.hub,
            reactor,
            ProcessRunner(reactor, grace=config.shutdown_timeout),
            self._writer,
            run_blocking,
        )
        interfaces = [
            DpmControl(self.storage, self.request_exit),
            DaqControl(self.manager),
            Subscriptions(self.hub),
        ]
        self.dispatcher = Dispatcher(method_table(*interfaces), translate_error)
        self.stop_reactor: Callable[[], None] = reactor.stop
        """What ``/dpm/Exit`` calls last; twistd then stops every service and exits 0."""
        self.factories: list[JsonRpcFactory] = []
        self.ports: list[IListeningPort] = []

    def startService(self) -> None:
        self.lock.record_owner()
        for description in self.config.listen:
            self._listen(description)
        super().startService()
        self._writer.start()
        self.manager.start()
        self.storage.start()
        log.info(
            "dpmd serving workspace {workspace} on {addresses}",
            workspace=str(self.config.workspace),
            addresses=", ".join(describe_address(port.getHost()) for port in self.ports),
        )

    def _listen(self, description: str) -> None:
        factory = JsonRpcFactory(self.dispatcher, self.hub, self.config.max_line_bytes)
        factory.noisy = False
        outcome: list[Any] = []
        try:
            endpoint = serverFromString(self._reactor, description)
        except (ValueError, KeyError, TypeError) as error:
            self._abandon_start()
            raise StartupError(f"listen endpoint {description!r} is not valid: {error}") from None
        endpoint.listen(factory).addBoth(outcome.append)
        if not outcome:
            self._abandon_start()
            raise StartupError(f"listen endpoint {description!r} did not bind at start-up")
        if isinstance(outcome[0], Failure):
            self._abandon_start()
            reason = outcome[0].getErrorMessage()
            raise StartupError(f"cannot listen on {description!r}: {reason}")
        self.factories.append(factory)
        self.ports.append(outcome[0])

    def _abandon_start(self) -> None:
        for port in self.ports:
            port.stopListening()
        self.ports.clear()
        self.factories.clear()

    def stopService(self) -> Deferred[None]:
        """Stop listening and stop the children; the DAQs resume on the next start."""
        self.storage.stop()
        stopping = [port.stopListening() for port in self.ports]
        self.ports.clear()
        stopping.append(super().stopService())
        stopping.append(self.manager.stop())
        return gatherResults([d for d in stopping if d is not None]).addBoth(self._release)

    def _release(self, result: Any) -> Any:
        self._writer.stop()
        self.lock.release()
        return result

    def request_exit(self) -> None:
        """``/dpm/Exit``: on a later turn (after the reply is written), close and stop."""
        self._reactor.callLater(0, self._exit)

    def _exit(self) -> None:
        log.info("exit requested by a client")
        sessions = [session for factory in self.factories for session in list(factory.sessions)]
        closing = gatherResults([session.close_gracefully() for session in sessions])
        closing.addTimeout(self.config.shutdown_timeout, self._reactor)
        closing.addBoth(lambda _: self.stop_reactor())


def describe_address(address: Any) -> str:
    """``host:port`` for IP listeners, the path for UNIX sockets."""
    if hasattr(address, "port"):
        return f"{address.host}:{address.port}"
    return str(getattr(address, "name", address))


def report_startup_error(error: Exception) -> None:
    """Say why start-up failed, on one line of the original stderr."""
    print(f"dpmd: {error}", file=sys.__stderr__, flush=True)
