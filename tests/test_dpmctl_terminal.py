"""The real ``dpmctl`` in pseudo-terminals of 40, 80 and 200 columns, in pipes, and on Ctrl-C.

Each command runs as a child process against a real dpmd in this process.
In a terminal its output is fed to a VT100 emulator (pyte), so the test sees
the screen a person would see: wrapped lines, redrawn progress, left-overs.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import struct
import sys
import termios
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

import dpmd
from dpmd.client import connect
from dpmd.client.demo import prepare_sources
from dpmd.client.watch import SilentView, Watcher
from tests.test_client_support import LiveServerCase, screen_text

SOURCE_ROOT = str(Path(dpmd.__file__).parent.parent)
DPMCTL = [sys.executable, "-c", "from dpmd.client.cli import main; main()"]
ESCAPE = re.compile(r"\x1b[\[\]()]")
WIDTHS = (40, 80, 200)
LINES = 100
"""Terminal height: enough for a whole demo at 40 columns, so nothing scrolls away."""


class Child(ProcessProtocol):
    """Collects a child's output (``out``; ``err`` too when it is not a terminal)."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[int] = Deferred()
        self.waiting: list[tuple[bytes, Deferred[None]]] = []

    def outReceived(self, data: bytes) -> None:
        self.out += data
        for text, waiter in list(self.waiting):
            if text in self.out:
                self.waiting.remove((text, waiter))
                waiter.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        if reason.check(ProcessDone):
            status = 0
        elif reason.check(ProcessTerminated):
            value = reason.value
            status = value.exitCode if value.exitCode is not None else 128 + value.signal
        else:  # pragma: no cover
            raise AssertionError(reason)
        for text, waiter in self.waiting:
            waiter.errback(AssertionError(f"{text!r} never came; output {self.out!r}"))
        self.waiting.clear()
        self.ended.callback(status)

    def output_contains(self, text: bytes) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        if text in self.out:
            waiter.callback(None)
        else:
            self.waiting.append((text, waiter))
        return waiter


def environment(**extra: str) -> dict[str, str]:
    environ = {
        key: value for key, value in os.environ.items() if key not in ("NO_COLOR", "COLUMNS")
    }
    return {**environ, "PYTHONPATH": SOURCE_ROOT, "TERM": "xterm-256color", **extra}


def in_terminal(
    argv: list[str], columns: int, environ: dict[str, str], lines: int = LINES
) -> tuple[Child, Any]:
    """Start ``dpmctl`` with a pseudo-terminal of that size as its stdin, stdout and stderr."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    child = Child()
    process = reactor.spawnProcess(
        child, sys.executable, [*DPMCTL, *argv], env=environ,
        usePTY=(master, slave, os.ttyname(slave)),
    )  # fmt: skip
    return child, process


def in_pipes(argv: list[str], environ: dict[str, str]) -> tuple[Child, Any]:
    child = Child()
    process = reactor.spawnProcess(child, sys.executable, [*DPMCTL, *argv], env=environ)
    return child, process


def timeout(test: TestCase, deferred: Deferred[Any], seconds: float = 60) -> Deferred[Any]:
    """``deferred``, failing the test instead of hanging it."""
    call = reactor.callLater(seconds, deferred.cancel)
    return deferred.addBoth(lambda result: (call.active() and call.cancel(), result)[1])


class ServerCase(LiveServerCase):
    """A real dpmd for ``dpmctl`` children to talk to."""

    @inlineCallbacks
    def run_in_terminal(self, columns: int, *argv: str, **environ: str) -> Any:
        child, _ = in_terminal(["--connect", self.endpoint, *argv], columns, environment(**environ))
        status = yield timeout(self, child.ended)
        return status, child.out.decode()

    @inlineCallbacks
    def blocked_daq(self, daq_id: str) -> Any:
        """A DAQ that waits in Collecting with an error: it stays active."""
        spec = prepare_sources(self.sources, daq_id)
        Path(spec["sources"][1]["location"]).write_text("not FITS\n")
        client = yield connect(self.endpoint, reactor)
        self.addCleanup(client.close)
        watcher = Watcher(client, reactor, SilentView(), daq_id, stop_on_error=True)
        yield watcher.subscribe()
        yield client.queue_daq(json.dumps(spec))
        yield watcher.follow()


class TerminalTests(ServerCase):
    @inlineCallbacks
    def test_demo_fits_every_width_and_leaves_nothing_behind(self) -> Any:
        for columns in WIDTHS:
            directory = self.sources / str(columns)
            status, output = yield self.run_in_terminal(columns, "demo", "--dir", str(directory))
            self.assertEqual(status, 0, output)
            screen = screen_text(output, columns, LINES)
            self.assertEqual(screen[0], f"sources: {directory}"[:columns])
            events = [line for line in screen if re.match(r"\d\d:\d\d:\d\d  DEMO\.", line)]
            self.assertTrue(events, screen)
            self.assertIn("Completed", " ".join(screen))
            self.assertTrue([line for line in screen if line.startswith("HDUs:")], screen)
            self.assertFalse([line for line in screen if "━" in line], screen)  # no stale bar
            self.assertIn("\x1b[32m", output)  # colour: Completed in green
            # The cursor, hidden during the live display, is shown again.
            self.assertGreaterEqual(output.rfind("\x1b[?25h"), output.rfind("\x1b[?25l"))

    @inlineCallbacks
    def test_tables_take_the_terminal_width(self) -> Any:
        yield self.blocked_daq("DEMO.2026-01-01T12:00:00.000")
        status, output = yield self.run_in_terminal(40, "active")
        self.assertEqual(status, 0, output)
        screen = screen_text(output, 40)
        self.assertEqual(screen[0], "DEMO.2026-01-01T12:00:00.000")  # one DAQ, two lines
        self.assertTrue(screen[1].startswith("  Collecting  yes  "), screen)
        status, output = yield self.run_in_terminal(200, "active")
        screen = screen_text(output, 200)
        self.assertEqual(screen[0].split(), ["ID", "SUBSTATE", "ERROR", "PROGRESS", "AGE"])
        self.assertTrue(screen[1].startswith("DEMO.2026-01-01T12:00:00.000  Collecting"))
        status, output = yield self.run_in_terminal(40, "internal", "DEMO.2026-01-01T12:00:00.000")
        self.assertEqual(status, 0, output)
        self.assertFalse([line for line in output.splitlines() if len(ESCAPE.sub("", line)) > 41])

    @inlineCallbacks
    def test_no_color_and_the_color_option(self) -> Any:
        yield self.blocked_daq("TEST.COLOUR")
        _, coloured = yield self.run_in_terminal(80, "status", "TEST.COLOUR")
        self.assertIn("\x1b[1;31mError", coloured)
        _, plain = yield self.run_in_terminal(80, "status", "TEST.COLOUR", NO_COLOR="1")
        self.assertNotIn("\x1b[", plain)
        self.assertEqual(screen_text(plain, 80), screen_text(coloured, 80))
        _, forced = yield self.run_in_terminal(
            80, "status", "TEST.COLOUR", "--color", "always", NO_COLOR="1"
        )
        self.assertIn("\x1b[1;31mError", forced)  # the option wins over the environment
        _, dumb = yield self.run_in_terminal(80, "status", "TEST.COLOUR", TERM="dumb")
        self.assertNotIn("\x1b[1;31m", dumb)

    @inlineCallbacks
    def test_pipes_get_plain_unwrapped_lines(self) -> Any:
        directory = self.sources / "piped"
        child, _ = in_pipes(
            ["--connect", self.endpoint, "demo", "--dir", str(directory)],
            environment(COLUMNS="40"),
        )
        status = yield timeout(self, child.ended)
        self.assertEqual((status, child.err), (0, b""))
        text = child.out.decode()
        self.assertNotIn("\x1b", text)
        self.assertIn(f"sources: {directory}\n", text)  # longer than 40 columns, not wrapped
        daq_id = re.search(r"queueing (\S+)", text)[1]  # type: ignore[index]
        child, _ = in_pipes(
            ["--connect", self.endpoint, "--color", "always", "status", daq_id], environment()
        )
        status = yield timeout(self, child.ended)
        self.assertEqual(status, 0)
        self.assertIn(b"\x1b[32mCompleted\x1b[0m", child.out)
        self.assertNotIn(b"\x1b[?25l", child.out)  # colour, but no cursor control


class InterruptTests(ServerCase):
    @inlineCallbacks
    def test_ctrl_c_in_a_terminal_ends_watch_quietly_with_130(self) -> Any:
        yield self.blocked_daq("TEST.CTRL-C")
        child, _ = in_terminal(
            ["--connect", self.endpoint, "watch", "TEST.CTRL-C"], 80, environment()
        )
        # Printed on the turn that then waits for the DAQ's end (Watcher.follow): waiting now.
        yield timeout(self, child.output_contains(b"TEST.CTRL-C  Collecting"))
        os.write(child.transport.fd, b"\x03")  # Ctrl-C, as the terminal's line discipline sees it
        status = yield timeout(self, child.ended)
        self.assertEqual(status, 130)
        after = child.out.split(b"Collecting", 1)[1]
        self.assertNotIn(b"lost", after)
        self.assertNotIn(b"dpmctl:", after)
        self.assertNotIn(b"Traceback", child.out)

    @inlineCallbacks
    def test_sigint_in_a_pipe_ends_watch_quietly_with_130(self) -> Any:
        yield self.blocked_daq("TEST.SIGINT")
        child, process = in_pipes(["--connect", self.endpoint, "watch"], environment())
        yield timeout(self, child.output_contains(b"TEST.SIGINT  Collecting"))  # waiting now
        process.signalProcess(signal.SIGINT)
        status = yield timeout(self, child.ended)
        self.assertEqual((status, child.err), (130, self.watching("all DAQs")))

    @inlineCallbacks
    def test_sigterm_ends_watch_quietly_with_143(self) -> Any:
        """A supervisor or ``timeout`` stopping a watch is no failure of the server."""
        yield self.blocked_daq("TEST.SIGTERM")
        argv = ["--connect", self.endpoint, "watch", "TEST.SIGTERM"]
        child, process = in_pipes(argv, environment())
        yield timeout(self, child.output_contains(b"TEST.SIGTERM  Collecting"))  # waiting now
        process.signalProcess(signal.SIGTERM)
        status = yield timeout(self, child.ended)
        self.assertEqual((status, child.err), (143, self.watching("DAQ TEST.SIGTERM")))
        self.assertNotIn(b"lost", child.out)

    def watching(self, what: str) -> bytes:
        """The one line a watch writes to stderr when it starts."""
        return f"watching {what} at {self.endpoint}; Ctrl-C to stop\n".encode()
