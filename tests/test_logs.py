"""dpmd's JSON log: one plain JSON object per line, from unit events and a real twistd."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

import dpmd
from dpmd import logs
from dpmd.client.demo import prepare_sources
from tests.test_client_support import short_directory
from tests.test_twistd import TWISTD
from tests.waiting import block_for_file

SOURCE_ROOT = str(Path(dpmd.__file__).parent.parent)
ISO_UTC = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")
T0 = 1767225600.25  # 2026-01-01T00:00:00.250Z


def captured(emit: Any) -> list[dict[str, Any]]:
    """The events a ``Logger`` publishes while ``emit(logger)`` runs."""
    events: list[dict[str, Any]] = []
    emit(Logger(namespace="dpmd.example", observer=events.append))
    return events


class RecordTests(SynchronousTestCase):
    def test_fields_are_flat_rendered_and_named(self) -> None:
        [event] = captured(
            lambda log: log.warn("DAQ {daq_id} slow: {seconds} s", daq_id="TEST.1", seconds=12.5)
        )
        event["log_time"] = T0
        self.assertEqual(
            logs.event_as_record(event),
            {
                "time": "2026-01-01T00:00:00.250000Z",
                "level": "warn",
                "logger": "dpmd.example",
                "message": "DAQ TEST.1 slow: 12.5 s",
                "daq_id": "TEST.1",
                "seconds": 12.5,
            },
        )

    def test_every_level_has_its_name_in_the_one_set(self) -> None:
        for level in LogLevel.iterconstants():
            [event] = captured(lambda log, level=level: log.emit(level, "x"))
            self.assertIn(logs.event_as_record(event)["level"], logs.LEVELS)
        self.assertEqual(logs.LEVELS, ("debug", "info", "warn", "error", "critical"))
        self.assertEqual(logs.level_name(None), "info")  # a legacy event without a level

    def test_unencodable_fields_are_left_out_but_rendered(self) -> None:
        thing = object()
        [event] = captured(lambda log: log.info("peer {peer}", peer=thing, count=3))
        record = logs.event_as_record(event)
        self.assertNotIn("peer", record)
        self.assertEqual(record["count"], 3)
        self.assertIn(repr(thing), record["message"])
        json.dumps(record)

    def test_failure_becomes_a_traceback(self) -> None:
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            failure = Failure()
        [event] = captured(lambda log: log.failure("merge of {daq_id} failed", failure, daq_id="A"))
        record = logs.event_as_record(event)
        self.assertEqual((record["level"], record["daq_id"]), ("critical", "A"))
        self.assertIn("ZeroDivisionError", record["traceback"])
        self.assertEqual(record["message"], "merge of A failed")

    def test_observer_writes_one_line_per_event_and_reopens(self) -> None:
        path = Path(self.mktemp())
        observer = logs.JsonLineObserver(logs._append(str(path)), str(path))
        self.addCleanup(lambda: observer._stream.close())
        observer({"log_namespace": "n", "log_format": "one\ntwo", "log_time": T0})
        rotated = path.with_suffix(".1")
        path.rename(rotated)  # what logrotate does before it signals
        observer.reopen()
        observer({"log_namespace": "n", "log_format": "three", "log_time": T0})
        self.assertEqual(json.loads(rotated.read_text())["message"], "one\ntwo")
        self.assertEqual(json.loads(path.read_text())["message"], "three")
        stream = io.StringIO()
        logs.JsonLineObserver(stream).reopen()  # no path: nothing to reopen


class LogWriterTests(SynchronousTestCase):
    """Every event reaches the log's observers on one thread of its own, in order, none
    lost at stop; then at once again."""

    def writing_to(self, *observers: Any) -> tuple[logs.LogWriter, Logger]:
        """A started writer over a publisher of ``observers``, and a logger of it."""
        publisher = LogPublisher(*observers)
        writer = logs.LogWriter(publisher)
        writer.startService()
        self.addCleanup(lambda: writer.running and writer.stopService())
        return writer, Logger(namespace="dpmd.example", observer=publisher)

    def test_events_are_written_off_the_callers_thread_in_order_and_all_at_stop(self) -> None:
        written: list[tuple[int, int]] = []
        writer, log = self.writing_to(
            lambda event: written.append((event["n"], threading.get_ident())))
        for n in range(2000):
            log.info("event {n}", n=n)
        writer.stopService()
        self.assertEqual([n for n, _ in written], list(range(2000)), "all, in order")
        [thread] = {thread for _, thread in written}
        self.assertNotEqual(thread, threading.get_ident())

    def test_once_stopped_events_are_written_at_once_by_the_same_observers(self) -> None:
        written: list[str] = []
        writer, log = self.writing_to(lambda event: written.append(event["log_format"]))
        writer.stopService()
        log.info("after the stop")
        self.assertEqual(written, ["after the stop"])

    def test_work_between_lines_runs_on_the_thread_after_the_lines_before(self) -> None:
        seen: list[tuple[str, int]] = []
        writer, log = self.writing_to(
            lambda event: seen.append((event["log_format"], threading.get_ident())))
        log.info("before")
        writer.between_lines(lambda: seen.append(("reopened", threading.get_ident())))
        log.info("after")
        writer.stopService()
        self.assertEqual([what for what, _ in seen], ["before", "reopened", "after"])
        self.assertEqual(len({thread for _, thread in seen}), 1, "all on the writer's thread")

    def test_a_failing_observer_does_not_stop_the_others(self) -> None:
        written: list[str] = []

        def broken(event: dict[str, Any]) -> None:
            raise RuntimeError("a full disk")

        writer, log = self.writing_to(broken, lambda event: written.append(event["log_format"]))
        log.info("still written")
        writer.stopService()
        self.assertIn("still written", written)


class TwistdJsonLogTests(TestCase):
    """A real ``twistd --logger dpmd.logs.json_file_observer dpmd`` run, DAQ included."""

    def test_every_line_is_plain_json(self) -> None:
        root = Path(self.mktemp()).absolute()
        root.mkdir()
        log_path = root / "dpmd.log.json"
        sock = short_directory(self) / "dpmd.sock"
        server = subprocess.Popen(
            [*TWISTD, "--nodaemon", "--pidfile=", "--logger", "dpmd.logs.json_file_observer",
             "dpmd", "--listen", f"unix:{sock}"],
            cwd=root,
            env=dict(os.environ, PYTHONPATH=SOURCE_ROOT, DATAROOT=str(root),
                     DPMD_JSON_LOG=str(log_path)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self.addCleanup(server.communicate)
        self.addCleanup(lambda: server.poll() is None and server.kill())
        block_for_file(sock, server)
        (root / "sources").mkdir()
        spec = prepare_sources(root / "sources", "DEMO.2026-01-01T00:00:00.000")
        requests = [
            {"jsonrpc": "2.0", "id": 1, "method": "/daq/QueueDaq",
             "params": {"specification": json.dumps(spec)}},
            {"jsonrpc": "2.0", "id": 2, "method": "/dpm/Exit"},
        ]  # fmt: skip
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(sock))
            client.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
            client.shutdown(socket.SHUT_WR)
            while client.recv(65536):
                pass
        self.assertEqual(server.wait(timeout=60), 0)
        text = log_path.read_text()
        self.assertNotIn("\x1e", text)
        records = [json.loads(line) for line in text.splitlines()]
        self.assertGreater(len(records), 3)
        for record in records:
            self.assertTrue(ISO_UTC.match(record["time"]), record)
            self.assertIn(record["level"], logs.LEVELS)
            self.assertIsInstance(record["logger"], str)
            self.assertIsInstance(record["message"], str)
            self.assertFalse([key for key in record if key.startswith("log_")], record)
        queued = [r for r in records if r.get("daq_id") == spec["id"]]
        self.assertTrue(queued, records)
        self.assertTrue(all(r["logger"].startswith("dpmd.") for r in queued))
        self.assertIn(f"DAQ {spec['id']} queued", [r["message"] for r in queued])
