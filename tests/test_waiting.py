"""The tests' own waiting: ``Harness.settle`` on a fake reactor, ``tests.waiting`` on the real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dpmd.testing import SHIM_ARGUMENTS
from tests import daqharness
from tests.daqharness import Harness
from tests.waiting import block_for_line, block_until, wait_until

SHIM = ["python"] * SHIM_ARGUMENTS
"""What ``FakeProcess.argv`` leaves out: the process-group shim's arguments."""


class Chain(ProcessProtocol):
    """Starts a child like the one that just ended, on a later turn or at once."""

    def __init__(self, harness: Harness, argv: list[str], left: int, at_once: bool) -> None:
        self.harness, self.argv, self.left, self.at_once = harness, argv, left, at_once
        self.ended = 0

    def start(self) -> None:
        self.harness.reactor.spawnProcess(self, "python", [*SHIM, *self.argv])

    def processEnded(self, reason: Failure) -> None:
        self.ended += 1
        if self.ended < self.left:
            if self.at_once:
                self.start()
            else:
                self.harness.reactor.callLater(0, self.start)


class SettleTests(SynchronousTestCase):
    def test_a_chain_of_children_is_answered_to_its_end(self) -> None:
        """Thirty checksum children, each started on the turn after the one before ended:
        more turns than a fixed count of twenty would run."""
        h = Harness(self)
        chain = Chain(h, [sys.executable, "-m", "dpmd.digest", h.source("a.fits")], 30, False)
        chain.start()
        h.settle()
        self.assertEqual(chain.ended, 30)
        self.assertEqual(h.reactor.running_processes(), [])

    def test_a_server_that_never_settles_fails_naming_what_is_due(self) -> None:
        h = Harness(self)
        self.patch(daqharness, "SETTLE_TURNS", 50)
        chain = Chain(h, ["ssh", "far", "wc -c < /data/a.fits"], 1000, True)
        chain.start()
        with self.assertRaises(AssertionError) as failed:
            h.settle()
        message = str(failed.exception)
        self.assertIn("did not settle in 50 turns", message)
        self.assertIn("still due: ssh far wc -c < /data/a.fits", message)
        self.assertEqual(chain.ended, 50)

    def test_settling_stops_once_nothing_is_due(self) -> None:
        """A call due later is left for the test to reach with ``advance``."""
        h = Harness(self)
        ran: list[str] = []
        h.reactor.callLater(0, ran.append, "now")
        h.reactor.callLater(1, ran.append, "later")
        h.settle()
        self.assertEqual(ran, ["now"])
        h.reactor.advance(1)
        self.assertEqual(ran, ["now", "later"])


class BlockingTests(SynchronousTestCase):
    def test_the_first_true_value(self) -> None:
        values = iter([None, 0, "", "found", "later"])
        self.assertEqual(block_until(lambda: next(values), "a value", 5, 0), "found")

    def test_the_deadline_names_what_never_came(self) -> None:
        with self.assertRaises(AssertionError) as failed:
            block_until(lambda: False, "the moon", 0.05)
        self.assertEqual(str(failed.exception), "the moon: not within 0.05 s")

    def test_a_process_that_ends_first_fails_at_once_with_its_stderr(self) -> None:
        program = "import sys; sys.stderr.write('no config\\n'); sys.exit(3)"
        process = subprocess.Popen([sys.executable, "-c", program], stderr=subprocess.PIPE)
        with self.assertRaises(AssertionError) as failed:
            block_until(lambda: False, "the socket", 60, process=process)
        expected = "the socket: the process ended first (status 3, stderr: no config)"
        self.assertEqual(str(failed.exception), expected)

    def test_a_line_in_a_log(self) -> None:
        log = Path(self.mktemp())
        # The line comes a little later than the file (the wait must look again), and then
        # the program ends (the line still counts).
        program = ("import sys, time; log = sys.argv[1]; open(log, 'w').write('starting\\n'); "
                   "time.sleep(0.1); open(log, 'a').write('serving on port 7\\n')")  # fmt: skip
        process = subprocess.Popen([sys.executable, "-c", program, str(log)])
        self.addCleanup(process.wait)
        self.assertEqual(block_for_line(log, "serving", process), "serving on port 7")


class DeferredTests(TestCase):
    @inlineCallbacks
    def test_the_reactor_runs_meanwhile(self) -> Any:
        """The condition comes true on a later reactor turn: the wait must let it run."""
        state: dict[str, int] = {}
        reactor.callLater(0.05, state.update, port=7)
        self.assertEqual((yield wait_until(lambda: state.get("port"), "the port", 5)), 7)

    @inlineCallbacks
    def test_the_deadline_names_what_never_came(self) -> Any:
        with self.assertRaises(AssertionError) as failed:
            yield wait_until(lambda: False, "the subscription", 0.05)
        self.assertEqual(str(failed.exception), "the subscription: not within 0.05 s")
