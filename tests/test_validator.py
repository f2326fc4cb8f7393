"""The vetting child, a real process on the real reactor.

What the fake harness cannot show: that the framing survives a pipe, that
answers come back in order and equal to the checks run in-process, that a
dead child's requests fail and the next request gets a new child, and that
a child that cannot start is named.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dpmd.client import connect
from dpmd.config import Config, build_config
from dpmd.daq.admission.validator import MODULE, Validator, ValidatorGone
from dpmd.daq.admission.vetting import Rules, request, serve, vet
from dpmd.workers import ProcessRunner
from tests.daqharness import specification
from tests.test_client_support import LiveServerCase


class Arrivals:
    """A stdin that hands over the given chunks, one a read, as a pipe would."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def read1(self, size: int = -1, /) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


class Written(io.BytesIO):
    """A stdout that keeps each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: Any) -> int:
        self.writes.append(bytes(data))
        return super().write(data)


class ServeTests(SynchronousTestCase):
    rules = Rules((), Path("/nonexistent/workspace"))

    def texts(self, count: int) -> list[bytes]:
        return [json.dumps(specification(f"S.{n}", f"/data/s{n}.fits")).encode()
                for n in range(count)]  # fmt: skip

    def test_requests_that_arrive_together_are_answered_in_one_write(self) -> None:
        texts = self.texts(5)
        together = b"".join(request(text) for text in texts[:3])
        last = request(texts[3]) + request(texts[4])
        split = len(last) - 10  # the last request comes in two pieces
        written = Written()
        serve(Arrivals([together, last[:split], last[split:]]), written, self.rules, 60)
        lines = [write.splitlines() for write in written.writes]
        self.assertEqual([len(write) for write in lines], [3, 1, 1])
        answers = [json.loads(line) for write in lines for line in write]
        self.assertEqual(answers, [vet(text, self.rules) for text in texts])

    def test_answers_are_not_kept_longer_than_write_every(self) -> None:
        texts = self.texts(3)
        written = Written()
        serve(Arrivals([b"".join(request(text) for text in texts)]), written, self.rules, 0)
        self.assertEqual([len(write.splitlines()) for write in written.writes], [1, 1, 1])


class ValidatorTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        root = Path(self.mktemp()).absolute()
        root.mkdir()
        self.config = build_config({"dataroot": str(root)}, environ={})
        self.runner = ProcessRunner(reactor, grace=5)
        self.addCleanup(self.stop_children)

    def stop_children(self) -> Any:
        return DeferredList([child.terminate(5) for child in list(self.runner.running)])

    def texts(self) -> list[bytes]:
        """Valid and invalid specifications, one with a newline and one with a big body."""
        texts = [json.dumps(specification(f"V.{n}", f"/data/v{n}.fits")).encode()
                 for n in range(20)]  # fmt: skip
        texts[3] = json.dumps(specification("V.3", "/data/v3.fits"), indent=2).encode()
        texts[7] = b'{"id": "V.7"'
        outside = {"type": "olasReceiver", "path": "/etc"}  # not under release.allowed
        texts[11] = json.dumps({**specification("V.11"), "receivers": [outside]}).encode()
        spec = specification("V.15", "/data/v15.fits")
        spec["sources"][0]["keywords"] *= 2000
        texts[15] = json.dumps(spec).encode()
        return texts

    @inlineCallbacks
    def test_answers_come_in_order_and_equal_the_checks_run_here(self) -> Any:
        validator = Validator(self.runner, self.config)
        texts = self.texts()
        answers = yield DeferredList([validator.vet(text) for text in texts],
                                     fireOnOneErrback=True)  # fmt: skip
        got = [answer for _, answer in answers]
        self.assertEqual(got, [vet(text, self.config) for text in texts])
        self.assertEqual(got[0]["sources"], [["src0", "/data/v0.fits"]])
        self.assertIn("refused", got[7])
        self.assertEqual(got[11]["id"], "V.11")
        self.assertIn("release.allowed", got[11]["refused"])
        self.assertEqual(len(self.runner.running), 1, "one child served them all")

    @inlineCallbacks
    def test_a_dead_childs_requests_fail_and_the_next_request_starts_another(self) -> Any:
        validator = Validator(self.runner, self.config)
        yield validator.vet(self.texts()[0])
        [child] = self.runner.running
        first_pid = child.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGSTOP)  # it must not answer before it is killed
        pending = validator.vet(self.texts()[1])
        os.kill(first_pid, signal.SIGKILL)
        failure = yield self.assertFailure(pending, ValidatorGone)
        self.assertIn("killed by SIGKILL", str(failure))
        answer = yield validator.vet(self.texts()[2])
        self.assertEqual(answer["id"], "V.2")
        [child] = self.runner.running
        self.assertNotEqual(child.pid, first_pid)

    @inlineCallbacks
    def test_a_child_that_cannot_start_is_named(self) -> Any:
        config: Config = build_config({"dataroot": str(self.config.dataroot),
                                       "python": "/nonexistent/python3"}, environ={})  # fmt: skip
        validator = Validator(self.runner, config)
        failure = yield self.assertFailure(validator.vet(self.texts()[0]), ValidatorGone)
        self.assertIn("/nonexistent/python3", str(failure))


    @inlineCallbacks
    def test_once_stopped_its_end_is_expected_and_no_child_is_started(self) -> Any:
        validator = Validator(self.runner, self.config)
        yield validator.vet(self.texts()[0])
        errors: list[dict[str, Any]] = []
        observer = errors.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        validator.stop()
        yield self.stop_children()
        self.assertEqual([e for e in errors if e.get("log_level") is LogLevel.error], [])
        failure = yield self.assertFailure(validator.vet(self.texts()[1]), ValidatorGone)
        self.assertIn("stopping", str(failure))
        self.assertEqual(self.runner.running, set())


class ServerTests(LiveServerCase):
    timeout = 120

    @inlineCallbacks
    def test_the_server_starts_its_child_before_the_first_request(self) -> Any:
        validator = self.service.manager.validator
        deadline = time.monotonic() + 30
        while not validator.ready:  # it says so once its checks are compiled
            self.assertLess(time.monotonic(), deadline, "the vetting child never got ready")
            yield deferLater(reactor, 0.01, lambda: None)
        children = [" ".join(child.cmdline()) for child in psutil.Process().children()]
        self.assertTrue([line for line in children if MODULE in line], children)

    @inlineCallbacks
    def test_twenty_clients_at_once_are_all_queued_with_the_childs_help(self) -> Any:
        clients = []
        for _ in range(20):
            client = yield connect(self.endpoint, reactor)
            self.addCleanup(client.close)
            clients.append(client)
        ids = [f"C.{round}.{number}" for round in range(3) for number in range(20)]
        for first in range(0, len(ids), 20):
            batch = ids[first:first + 20]
            replies = yield DeferredList(
                [client.queue_daq(specification(daq_id, f"/missing/{daq_id}.fits"))
                 for client, daq_id in zip(clients, batch, strict=True)],
                fireOnOneErrback=True,
            )  # fmt: skip
            self.assertEqual([reply.id for _, reply in replies], batch)
        active = yield clients[0].get_active_daqs()
        queued = [status.id for status in active]
        self.assertEqual(sorted(queued), sorted(ids))
        rounds = [int(daq_id.split(".")[1]) for daq_id in queued]
        self.assertEqual(rounds, sorted(rounds), "queued in order of arrival, round by round")
        children = [" ".join(child.cmdline()) for child in psutil.Process().children()]
        self.assertTrue([line for line in children if MODULE in line], children)
