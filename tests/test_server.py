"""The assembled server: real sockets on port 0, the workspace lock, storage and Exit."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dpmd.config import build_config
from dpmd.rpc.dispatch import Dispatcher
from dpmd.server import DpmService, StartupError
from dpmd.storage import STORAGE_TOPIC, StorageMonitor
from dpmd.tap import build_service
from dpmd.testing import JsonLineClient, connect_session, synchronous, written_messages
from dpmd.topics import TopicHub


def fake_statvfs(path: str) -> os.statvfs_result:
    # f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, f_favail, f_flag, f_namemax
    return os.statvfs_result((4096, 1024, 1000, 600, 500, 0, 0, 0, 0, 255))


class StorageMonitorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.hub = TopicHub()
        self.monitor = StorageMonitor("/ws", self.clock, self.hub, synchronous, fake_statvfs)
        self.session, self.transport = connect_session(Dispatcher({}), self.hub)

    def test_query_converts_blocks_to_bytes(self) -> None:
        status = self.successResultOf(self.monitor.query())
        self.assertEqual(
            status.to_json(),
            {
                "path": "/ws",
                "capacity": 1024000,
                "free": 614400,
                "available": 512000,
                "timestamp": 1000.0,
            },
        )

    def test_first_sample_at_subscription_then_every_interval(self) -> None:
        ticks = TimerService(60, self.monitor.publish_sample)  # as the server drives it
        ticks.clock = self.clock
        ticks.startService()
        self.hub.subscribe(STORAGE_TOPIC, self.session)
        self.assertEqual(written_messages(self.transport), [])  # not before the Subscribe reply
        self.clock.advance(0)
        [first] = written_messages(self.transport)
        self.assertEqual(first["method"], STORAGE_TOPIC)
        self.assertEqual(first["params"]["timestamp"], 1000.0)
        self.clock.advance(59)
        self.assertEqual(written_messages(self.transport), [])
        self.clock.advance(1)
        [second] = written_messages(self.transport)
        self.assertEqual(second["params"]["timestamp"], 1060.0)
        ticks.stopService()
        self.clock.advance(60)
        self.assertEqual(written_messages(self.transport), [])


def make_config(test: SynchronousTestCase, **values: Any) -> Any:
    root = Path(test.mktemp()).absolute()
    root.mkdir()
    return build_config({"dataroot": str(root), **values}, environ={})


class RealSocketTests(TestCase):
    def start(self, **values: Any) -> DpmService:
        config = make_config(self, listen=["tcp:0:interface=127.0.0.1"], **values)
        service = build_service(config, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    @inlineCallbacks
    def connect(self, service: DpmService) -> Any:
        port = service.ports[0].getHost().port
        client = JsonLineClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(client.transport.loseConnection)
        return client

    @inlineCallbacks
    def test_query_storage_status_matches_statvfs(self) -> None:
        service = self.start()
        client = yield self.connect(service)
        client.send({"jsonrpc": "2.0", "id": 1, "method": "/dpm/QueryStorageStatus"})
        reply = yield client.next_message()
        status = reply["result"]
        expected = os.statvfs(service.config.workspace)
        self.assertEqual(status["path"], str(service.config.workspace))
        self.assertEqual(status["capacity"], expected.f_blocks * expected.f_frsize)
        tolerance = 256 * 1024 * 1024  # other processes write meanwhile
        self.assertApproximates(status["free"], expected.f_bfree * expected.f_frsize, tolerance)
        self.assertApproximates(
            status["available"], expected.f_bavail * expected.f_frsize, tolerance
        )
        self.assertIsInstance(status["timestamp"], float)

    @inlineCallbacks
    def test_subscribe_storage_over_a_socket(self) -> None:
        service = self.start()
        client = yield self.connect(service)
        client.send(
            {"jsonrpc": "2.0", "id": "s", "method": "Subscribe", "params": {"topic": STORAGE_TOPIC}}
        )
        self.assertEqual(
            (yield client.next_message()), {"jsonrpc": "2.0", "id": "s", "result": None}
        )
        sample = yield client.next_message()
        self.assertEqual(sample["method"], STORAGE_TOPIC)
        self.assertNotIn("id", sample)
        self.assertEqual(
            set(sample["params"]), {"path", "capacity", "free", "available", "timestamp"}
        )
        client.send({"jsonrpc": "2.0", "id": 2, "method": "Unsubscribe", "params": [STORAGE_TOPIC]})
        self.assertEqual((yield client.next_message())["result"], None)
        client.send({"jsonrpc": "2.0", "id": 3, "method": "Subscribe", "params": ["/nope"]})
        error = (yield client.next_message())["error"]
        self.assertEqual(error["code"], -32602)
        self.assertIn("/nope", error["message"])

    @inlineCallbacks
    def test_unknown_method_keeps_the_connection(self) -> None:
        service = self.start()
        client = yield self.connect(service)
        client.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"/dpm/Nope"}\r\n')
        self.assertEqual((yield client.next_message())["error"]["code"], -32601)
        client.send({"jsonrpc": "2.0", "id": 2, "method": "/dpm/QueryStorageStatus"})
        self.assertIn("capacity", (yield client.next_message())["result"])

    @inlineCallbacks
    def test_exit_answers_closes_sessions_then_stops_the_reactor(self) -> None:
        service = self.start()
        stopped: list[bool] = []
        service.stop_reactor = lambda: stopped.append(True)
        bystander = yield self.connect(service)
        client = yield self.connect(service)
        client.send({"jsonrpc": "2.0", "id": 1, "method": "/dpm/Exit"})
        self.assertEqual((yield client.next_message())["result"], "dpmd is shutting down")
        yield client.closed
        yield bystander.closed
        self.assertEqual(stopped, [True])

    def test_bind_failure_is_one_clear_error(self) -> None:
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        config = make_config(
            self, listen=["tcp:0:interface=127.0.0.1", f"tcp:{port}:interface=127.0.0.1"]
        )
        service = build_service(config, reactor)
        self.addCleanup(service.lock.release)
        error = self.assertRaises(StartupError, service.startService)
        self.assertIn(f"tcp:{port}", str(error))
        self.assertIn("cannot listen", str(error))
        self.assertEqual(service.ports, [])

    def test_second_server_on_a_workspace_is_refused(self) -> None:
        config = make_config(self, listen=["tcp:0"])
        first = build_service(config, reactor)
        self.addCleanup(first.lock.release)
        error = self.assertRaises(StartupError, build_service, config, reactor)
        self.assertIn(f"process {os.getpid()}", str(error))
        self.assertIn(str(config.workspace), str(error))
        first.lock.release()
        build_service(config, reactor).lock.release()

    def test_a_refused_build_removes_the_workspace_it_made_and_keeps_one_it_found(self) -> None:
        config = make_config(self, workspace="night/dpm", listen=["bogus:endpoint"])
        error = self.assertRaises(StartupError, build_service, config, reactor)
        self.assertIn("listen endpoint 'bogus:endpoint' is not valid", str(error))
        self.assertEqual(list(config.dataroot.iterdir()), [])  # night/ and night/dpm/ are gone
        config.workspace.mkdir(parents=True)
        (config.workspace / "dpmd.sqlite3").write_bytes(b"")
        self.assertRaises(StartupError, build_service, config, reactor)
        self.assertEqual(
            sorted(path.name for path in config.workspace.iterdir()), ["dpmd.lock", "dpmd.sqlite3"]
        )
