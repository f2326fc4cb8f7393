"""The service tree of one dpmd, built from Twisted's own services.

::

    DpmService (MultiService)            started in this order, stopped in reverse
      store threads                      the journal's writer and reader threads
      DAQ manager                        recovery from the store; stops children
      TimerService(storage_interval)     /dpm/storage samples
      TimerService(archive.check_interval)  retention of archived folders
      strports.service(listen) …         one per listen string; they bind first
      MetricsService (metrics.listen)    optional: the /metrics page, fed by the manager

Every listener binds in ``privilegedStartService``, before anything else
starts: a port that cannot be bound stops start-up with one line naming it.
Recovery runs in the manager's ``startService``, before the reactor runs, so
clients are served only once every DAQ is back.  On stop the listeners go
first, then the children are stopped and the store settles, each wait
bounded by ``shutdown_timeout``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, maybeDeferred
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
    IReactorProcess,
    IReactorThreads,
    IReactorTime,
)
from twisted.internet.threads import deferToThreadPool

from dpmd.access import AccessPolicy
from dpmd.api import DaqControl, DpmControl, Subscriptions, method_table, translate_error
from dpmd.blocking import SerialExecutor
from dpmd.config import Config
from dpmd.daq.lifecycle import settle
from dpmd.daq.manager import DaqManager
from dpmd.daq.persist.store import StoreError
from dpmd.lock import WorkspaceLock
from dpmd.logs import get_logger
from dpmd.metrics import MetricsService
from dpmd.rpc.bounds import ServerBounds
from dpmd.rpc.dispatch import Dispatcher
from dpmd.rpc.listener import JsonRpcFactory
from dpmd.sdnotify import SystemdNotifier
from dpmd.storage import StorageMonitor
from dpmd.topics import TopicHub
from dpmd.workers import ProcessRunner
from dpmd.workspace import Workspace

log = get_logger(__name__)


class StartupError(Exception):
    """The server cannot start; the text is the one line an operator needs."""


class _Threads(Service):
    """The store's threads: started before recovery's commits, stopped last."""

    def __init__(self, *executors: SerialExecutor) -> None:
        self._executors = executors

    def startService(self) -> None:
        super().startService()
        for executor in self._executors:
            executor.start()

    def stopService(self) -> None:
        super().stopService()
        for executor in self._executors:
            executor.stop()


class _Manager(Service):
    def __init__(self, manager: DaqManager) -> None:
        self.manager = manager

    def startService(self) -> None:
        try:
            self.manager.start()
        except StoreError as error:
            raise StartupError(str(error)) from None
        self.manager.prepare_admission()
        super().startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.manager.stop().addBoth(lambda _: self.manager.close())


class DpmService(MultiService):
    """Everything one dpmd runs, started and stopped as one service."""

    def __init__(self, config: Config, reactor: IReactorTime, lock: WorkspaceLock) -> None:
        """``reactor`` is the running reactor (in tests too): it provides every reactor
        interface; each part gets it as the one interface it needs."""
        super().__init__()
        self.config = config
        self._reactor = reactor
        self.lock = lock
        self.hub = TopicHub()
        threads = IReactorThreads(reactor)
        pool = threads.getThreadPool()

        def run_blocking(function: Any, *args: Any) -> Deferred[Any]:
            return deferToThreadPool(threads, pool, function, *args)

        writer = SerialExecutor(threads, "dpmd-store-writer")
        reader = SerialExecutor(threads, "dpmd-store-reader")
        self.storage = StorageMonitor(str(config.workspace), reactor, self.hub, run_blocking,
                                      max_age=config.storage_max_age,
                                      reserve=config.storage_reserve)  # fmt: skip
        self.notifier = SystemdNotifier()
        self._bounds = ServerBounds(config.max_connections, config.max_buffered_bytes)
        self._access = AccessPolicy.of(config.access.control, config.access.read)
        self.manager = DaqManager(
            config, Workspace(config.workspace), self.hub, reactor,
            ProcessRunner(IReactorProcess(reactor), grace=config.shutdown_timeout), writer, reader,
            run_blocking, self.storage,
        )  # fmt: skip
        interfaces = [
            DpmControl(self.storage, self.request_exit),
            DaqControl(self.manager),
            Subscriptions(self.hub),
        ]
        table = method_table(*interfaces)
        self.metrics = self._metrics(list(table))
        observe = self.metrics.rpc.observe if self.metrics is not None else None
        self.dispatcher = Dispatcher(table, translate_error, observe=observe, clock=reactor)
        self.stop_reactor: Callable[[], None] = IReactorCore(reactor).stop
        """What ``/dpm/Exit`` calls last; twistd then stops every service and exits 0."""

        _Threads(writer, reader).setServiceParent(self)
        _Manager(self.manager).setServiceParent(self)
        self._timer(config.storage_interval, self.storage.publish_sample)
        self._timer(config.archive.check_interval, self._retention)
        self.factories: list[JsonRpcFactory] = []
        self._listeners: dict[IService, str] = {}
        for description in config.listen:
            self._listener(description)
        if self.metrics is not None:
            self.metrics.setServiceParent(self)
            self._listeners[self.metrics] = self.metrics.description
        self.ports: list[IListeningPort] = []
        self._bound_once = False

    def _timer(self, interval: float, call: Callable[[], Any]) -> None:
        timer = TimerService(interval, call)
        timer.clock = self._reactor
        timer.setServiceParent(self)

    def _metrics(self, methods: list[str]) -> MetricsService | None:
        description = self.config.metrics_listen
        if description is None:
            return None
        try:
            return MetricsService(description, self._reactor, self.hub, self.storage, self.manager,
                                  methods)  # fmt: skip
        except (ValueError, KeyError, TypeError) as error:
            raise StartupError(f"metrics.listen {description!r} is not valid: {error}") from None

    def _retention(self) -> Deferred[None]:
        """One retention pass; returned, so that stopping waits for a pass under way
        before the store closes."""
        passing = self.manager.archive.retention_pass()
        settle(passing, "the retention task")
        return passing

    def _listener(self, description: str) -> None:
        factory = JsonRpcFactory(self.dispatcher, self.hub, self.config.max_line_bytes,
                                 bounds=self._bounds, access=self._access)  # fmt: skip
        try:
            listener = strports.service(description, factory, reactor=IReactorCore(self._reactor))
        except (ValueError, KeyError, TypeError) as error:
            raise StartupError(f"listen endpoint {description!r} is not valid: {error}") from None
        listener.setServiceParent(self)
        self.factories.append(factory)
        self._listeners[listener] = description

    def privilegedStartService(self) -> None:
        """Bind every listener first; a failure names the listen string and stops start-up."""
        self._bound_once = True
        for service in self:
            try:
                service.privilegedStartService()
            except Exception as error:
                description = self._listeners.get(service, "")
                self._unbind()
                raise StartupError(f"cannot listen on {description!r}: {_reason(error)}") from None
            if isinstance(service, StreamServerEndpointService):
                service._waitingForPort.addCallback(self._bound)

    def _bound(self, port: IListeningPort) -> IListeningPort:
        self.ports.append(port)
        return port

    def _unbind(self) -> None:
        for port in self.ports:
            port.stopListening()
        self.ports.clear()

    def startService(self) -> None:
        if not self._bound_once:  # started without twistd (tests, embedding)
            self.privilegedStartService()
        self.lock.record_owner()
        super().startService()
        addresses = ", ".join(describe_address(port.getHost()) for port in self.ports)
        log.info("dpmd serving workspace {workspace} on {addresses}",
                 workspace=str(self.config.workspace), addresses=addresses)  # fmt: skip
        self.notifier.ready(f"serving {addresses}")

    @inlineCallbacks
    def stopService(self) -> Any:
        """Stop the services in reverse order, each once the one before has stopped.

        (``MultiService`` stops them all at once: the store's threads would end
        while the manager still commits.)  The DAQs resume on the next start.
        """
        Service.stopService(self)
        self.notifier.stopping()
        self.ports.clear()
        try:
            for service in reversed(list(self)):
                try:
                    yield maybeDeferred(service.stopService)
                except Exception:
                    log.failure("stopping {service} failed", service=repr(service))
        finally:
            self.lock.release()

    def request_exit(self) -> None:
        """``/dpm/Exit``: on a later turn (after the reply is written), close and stop."""
        self._reactor.callLater(0, self._exit)

    def _exit(self) -> None:
        """No new connections; every session closed once it has answered; then stop."""
        log.info("exit requested by a client")
        closing = gatherResults([factory.close_sessions() for factory in self.factories])
        closing.addTimeout(self.config.shutdown_timeout, self._reactor)
        closing.addBoth(lambda _: self.stop_reactor())


def _reason(error: BaseException) -> str:
    """The operating system's reason for a bind failure, without Twisted's wrapping."""
    socket_error = getattr(error, "socketError", None)
    if socket_error is not None:
        return getattr(socket_error, "strerror", None) or str(socket_error)
    return str(error)


def describe_address(address: Any) -> str:
    """``host:port`` for IP listeners, the path for UNIX sockets."""
    if hasattr(address, "port"):
        return f"{address.host}:{address.port}"
    return str(getattr(address, "name", address))


def report_startup_error(error: Exception) -> None:
    """Say why start-up failed, on one line of the original stderr."""
    print(f"dpmd: {error}", file=sys.__stderr__, flush=True)
