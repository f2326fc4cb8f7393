"""The service tree of one dpmd: listeners, the storage monitor, the workspace lock."""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from dpmd.api import DpmControl, Subscriptions, method_table, translate_error
from dpmd.config import Config
from dpmd.lock import WorkspaceLock
from dpmd.logs import get_logger
from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.protocol import JsonRpcFactory
from dpmd.rpc.topics import TopicHub
from dpmd.storage import StorageMonitor

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
        self.storage = StorageMonitor(
            str(config.workspace),
            reactor,
            self.hub,
            config.storage_interval,
            run_blocking=lambda f, *args: deferToThreadPool(
                reactor, reactor.getThreadPool(), f, *args
            ),
        )
        interfaces = [DpmControl(self.storage, self.request_exit), Subscriptions(self.hub)]
        self.dispatcher = Dispatcher(method_table(*interfaces), translate_error)
        self.factories: list[JsonRpcFactory] = []
        self.ports: list[IListeningPort] = []

    def startService(self) -> None:
        self.lock.record_owner()
        for description in self.config.listen:
            self._listen(description)
        super().startService()
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
        self.storage.stop()
        stopping = [port.stopListening() for port in self.ports]
        self.ports.clear()
        stopping.append(super().stopService())
        return gatherResults([d for d in stopping if d is not None]).addBoth(self._release)

    def _release(self, result: Any) -> Any:
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
        closing.addBoth(lambda _: self._reactor.stop())


def describe_address(address: Any) -> str:
    """``host:port`` for IP listeners, the path for UNIX sockets."""
    if hasattr(address, "port"):
        return f"{address.host}:{address.port}"
    return str(getattr(address, "name", address))


def report_startup_error(error: Exception) -> None:
    """Say why start-up failed, on one line of the original stderr."""
    print(f"dpmd: {error}", file=sys.__stderr__, flush=True)
