"""``dpmd.workers`` with real child processes on the real reactor.

The stages trust this module for three things that fakes cannot prove: the
lines a child prints arrive whole and in order, a stop reaches every process
the child started, and no child outlives a server killed with ``kill -9``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

import dpmd
from dpmd.config import build_config
from dpmd.workers import (
    MAX_LINE,
    STDERR_TAIL,
    ChildProcess,
    ExitStatus,
    ProcessRunner,
    child_environment,
    memory_peak,
    python_command,
)
from tests.waiting import wait_until

PYTHON = [sys.executable, "-S", "-c"]
"""A quick Python child (no site packages to import)."""


def is_gone(process: psutil.Process) -> bool:
    """True once ``process`` has ended (a zombie nobody reaped counts as ended)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@inlineCallbacks
def wait_until_gone(process: psutil.Process, seconds: float = 1.5) -> Any:
    """Poll until ``process`` has ended; False if it is still there after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not is_gone(process):
        if time.monotonic() > deadline:
            return False
        yield deferLater(reactor, 0.01, lambda: None)
    return True


class RunnerTestCase(TestCase):
    timeout = 20  # a child that cannot be stopped fails the test quickly

    def setUp(self) -> None:
        self.runner = ProcessRunner(reactor)
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()

    def spawn(self, argv: list[str], **options: Any) -> tuple[ChildProcess, list[bytes]]:
        """Start ``argv``, collecting its stdout lines; never leave it running after the test."""
        lines: list[bytes] = []
        child = self.runner.spawn("test", argv, on_line=lines.append, **options)
        self.addCleanup(lambda: child.terminate(0.1).addCallback(lambda _: None))
        return child, lines

    def adopt(self, pid: int) -> psutil.Process:
        """A process our child started: kill it at the end if the code under test did not."""
        process = psutil.Process(pid)

        def kill() -> None:
            if not is_gone(process):
                process.kill()

        self.addCleanup(kill)
        return process


class OutputTests(RunnerTestCase):
    @inlineCallbacks
    def test_lines_arrive_in_order_even_when_split_across_reads(self) -> None:
        """A JSON line cut between two reads of the pipe is delivered once, whole."""
        program = (
            "import sys,time\n"
            "for piece in ['{\"n\": 1', '}\\n{\"n\": 2}\\n{\"n\"', ': 3}\\n']:\n"
            "    sys.stdout.write(piece); sys.stdout.flush(); time.sleep(0.05)\n"
        )
        child, lines = self.spawn([*PYTHON, program])
        status = yield child.wait()
        self.assertEqual(status, ExitStatus(0))
        self.assertEqual([json.loads(line) for line in lines], [{"n": 1}, {"n": 2}, {"n": 3}])

    @inlineCallbacks
    def test_many_lines_keep_their_order(self) -> None:
        """Thousands of lines span many pipe reads; none is lost, doubled or reordered."""
        program = "import sys\nfor n in range(5000): sys.stdout.write('{\"n\": %d}\\n' % n)\n"
        child, lines = self.spawn([*PYTHON, program])
        yield child.wait()
        self.assertEqual([json.loads(line)["n"] for line in lines], list(range(5000)))

    @inlineCallbacks
    def test_last_line_without_newline_is_delivered_at_exit(self) -> None:
        """A child may end its output without a newline; its result line must not be lost."""
        program = 'import sys; sys.stdout.write(\'{"a": 1}\\n\\n{"result": 2}\')'
        child, lines = self.spawn([*PYTHON, program])
        yield child.wait()
        self.assertEqual(lines, [b'{"a": 1}', b'{"result": 2}'])

    @inlineCallbacks
    def test_an_overlong_line_is_cut_once(self) -> None:
        """An over-long line yields its first ``MAX_LINE`` bytes, not a string of fragments.

        The rest of that line is not a line of its own: handing it to ``on_line``
        would feed the stage garbage that happens to start mid-line.
        """
        program = (
            "import sys\n"
            f"sys.stdout.write('x' * {3 * MAX_LINE + 10} + '\\n')\n"
            "sys.stdout.write('{\"after\": 1}\\n')\n"
        )
        child, lines = self.spawn([*PYTHON, program])
        yield child.wait()
        self.assertEqual(lines[-1], b'{"after": 1}')
        self.assertEqual([len(line) for line in lines], [MAX_LINE, len(b'{"after": 1}')])


class InputTests(RunnerTestCase):
    @inlineCallbacks
    def test_what_is_written_reaches_the_child_before_the_reactor_turns(self) -> None:
        child, _ = self.spawn([*PYTHON, "import sys; sys.exit(len(sys.stdin.buffer.read(5)))"],
                              keep_stdin=True)  # fmt: skip
        child.write(b"hello")
        process = psutil.Process(child.pid)
        deadline = time.monotonic() + 10
        while process.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)  # the reactor does not run meanwhile
        self.assertEqual(process.status(), psutil.STATUS_ZOMBIE, "the child read its input")
        self.assertEqual((yield child.wait()), ExitStatus(5))


class StderrTests(RunnerTestCase):
    @inlineCallbacks
    def test_stderr_is_appended_to_the_file_given(self) -> None:
        """The merger's log accumulates over retries: each run appends, none truncates."""
        log_file = self.directory / "merge.log"
        for run in (1, 2):
            program = f"import sys; sys.stderr.write('run {run}\\n')"
            child, _ = self.spawn([*PYTHON, program], stderr_path=log_file)
            yield child.wait()
            self.assertEqual(child.stderr_tail, b"")
        self.assertEqual(log_file.read_text(), "run 1\nrun 2\n")

    @inlineCallbacks
    def test_stderr_tail_gives_the_last_error_line(self) -> None:
        """Without a log file, the reason a child failed is its last non-blank stderr line."""
        program = (
            "import sys\n"
            "sys.stderr.write('x' * 10000 + '\\nfirst\\n  cannot open target: denied  \\n\\n')\n"
            "sys.exit(1)\n"
        )
        child, _ = self.spawn([*PYTHON, program])
        status = yield child.wait()
        self.assertEqual(status, ExitStatus(1))
        self.assertEqual(child.last_error_line(), "cannot open target: denied")
        self.assertEqual(len(child.stderr_tail), STDERR_TAIL)
        self.assertTrue(child.stderr_tail.endswith(b"denied  \n\n"))


class ExitStatusTests(RunnerTestCase):
    @inlineCallbacks
    def test_exit_codes(self) -> None:
        """The stages map the merger's exit codes to reasons; the code must come through."""
        results = []
        for code in (0, 3):
            child, _ = self.spawn([*PYTHON, f"raise SystemExit({code})"])
            results.append((yield child.wait()))
        self.assertEqual(results, [ExitStatus(0), ExitStatus(3)])
        self.assertEqual([r.ok for r in results], [True, False])
        self.assertEqual(results[1].describe(), "exit status 3")

    @inlineCallbacks
    def test_a_signal_is_reported_as_such(self) -> None:
        """A child killed by a signal has no exit code; the signal tells that it was stopped."""
        child, _ = self.spawn([*PYTHON, "import os,signal; os.kill(os.getpid(), signal.SIGUSR1)"])
        status = yield child.wait()
        self.assertEqual(status, ExitStatus(None, signal.SIGUSR1))
        self.assertFalse(status.ok)
        self.assertEqual(status.describe(), "killed by SIGUSR1")


class StopTests(RunnerTestCase):
    @inlineCallbacks
    def test_terminate_reaches_the_whole_process_group(self) -> None:
        """SIGTERM goes to the group: a grandchild (``ssh`` under ``rsync``) stops too.

        The grandchild's stdout is not the child's pipe, so the child's end does
        not wait for it: only the group signal can have stopped it.
        """
        script = "sleep 30 >/dev/null & echo $!; wait"
        child, lines = self.spawn(["sh", "-c", script])
        while not lines:
            yield deferLater(reactor, 0.01, lambda: None)
        grandchild = self.adopt(int(lines[0]))
        self.assertEqual(os.getpgid(grandchild.pid), child.pid)
        started = time.monotonic()
        status = yield child.terminate(30)
        self.assertEqual(status, ExitStatus(None, signal.SIGTERM))
        self.assertLess(time.monotonic() - started, 10, "SIGTERM alone should have stopped it")
        self.assertTrue((yield wait_until_gone(grandchild)), "the grandchild outlived SIGTERM")

    @inlineCallbacks
    def test_sigkill_follows_when_term_is_ignored(self) -> None:
        """A group that ignores SIGTERM gets SIGKILL after the timeout, grandchildren too."""
        script = "trap '' TERM; sleep 30 >/dev/null & echo $!; wait"
        child, lines = self.spawn(["sh", "-c", script])
        while not lines:  # the trap is set once the pid is printed
            yield deferLater(reactor, 0.01, lambda: None)
        grandchild = self.adopt(int(lines[0]))
        started = time.monotonic()
        status = yield child.terminate(0.5).addTimeout(5, reactor)
        elapsed = time.monotonic() - started
        self.assertEqual(status, ExitStatus(None, signal.SIGKILL))
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 5)
        self.assertTrue((yield wait_until_gone(grandchild)), "the grandchild outlived SIGKILL")

    @inlineCallbacks
    def test_terminate_after_the_end_just_reports(self) -> None:
        """Stopping a child that already ended is harmless and gives its status."""
        child, _ = self.spawn([*PYTHON, "raise SystemExit(4)"])
        yield child.wait()
        self.assertEqual((yield child.terminate(0.1)), ExitStatus(4))


class WaitTests(RunnerTestCase):
    @inlineCallbacks
    def test_each_caller_gets_its_own_deferred(self) -> None:
        """One caller's callbacks must not change what another caller receives."""
        child, _ = self.spawn([*PYTHON, "import time; time.sleep(0.1)"])
        first, second = child.wait(), child.wait()
        self.assertIsNot(first, second)
        first.addCallback(lambda _: "changed by the first caller")
        self.assertEqual((yield second), ExitStatus(0))
        self.assertEqual((yield first), "changed by the first caller")
        late = child.wait()
        self.assertIsNot(late, child.wait())
        self.assertEqual((yield late), ExitStatus(0))

    @inlineCallbacks
    def test_describe_reports_the_memory_a_child_holds(self) -> None:
        """The internal status shows each child's RSS, so an operator sees a merger's weight."""
        child, lines = self.spawn([*PYTHON, "import sys, time; print('up', flush=True); "
                                            "time.sleep(30)"])  # fmt: skip
        while not lines:
            yield deferLater(reactor, 0.01, lambda: None)
        description = child.describe()
        self.assertEqual((description["kind"], description["pid"]), ("test", child.pid))
        self.assertGreater(description["rss_bytes"], 1 << 20)
        yield child.terminate(1)
        self.assertIsNone(child.describe()["rss_bytes"])

    @inlineCallbacks
    def test_running_set_follows_the_children(self) -> None:
        """Shutdown stops what is in ``running``: a child is there exactly while it lives."""
        child, _ = self.spawn([*PYTHON, "import time; time.sleep(0.1)"])
        self.assertEqual(self.runner.running, {child})
        self.assertTrue(child.running)
        yield child.wait()
        self.assertEqual(self.runner.running, set())
        self.assertFalse(child.running)


ORPHAN_MAKER = """
import os, signal, sys, time
from twisted.internet import reactor
from dpmd.workers import ProcessRunner

child = ProcessRunner(reactor).spawn("sleep", ["sleep", "60"])
if sys.argv[1] == "at-once":
    print(child.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
cmdline = f"/proc/{child.pid}/cmdline"
while open(cmdline, "rb").read() != b"sleep\\x0060\\x00":  # the shim has exec'd sleep
    time.sleep(0.005)
print(child.pid, flush=True)
reactor.run()
"""


class DeathSignalTests(RunnerTestCase):
    @inlineCallbacks
    def orphan_survives(self, when: str) -> Any:
        """Run a program that spawns ``sleep 60`` through a runner, kill -9 the program and
        tell whether its sleep is still there after 1.5 s."""
        maker, lines = self.spawn([sys.executable, "-c", ORPHAN_MAKER, when])
        while not lines and maker.running:
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertTrue(lines, f"the program printed no pid: {maker.stderr_tail!r}")
        sleep = self.adopt(int(lines[0]))
        if maker.running:
            os.kill(maker.pid, signal.SIGKILL)
        self.assertEqual((yield maker.wait()), ExitStatus(None, signal.SIGKILL))
        return not (yield wait_until_gone(sleep))

    @inlineCallbacks
    def test_children_die_with_a_parent_killed_by_sigkill(self) -> None:
        """After ``kill -9`` of the server no merger goes on writing into its workspace."""
        self.assertFalse((yield self.orphan_survives("running")), "sleep outlived its parent")

    @inlineCallbacks
    def test_children_die_with_a_parent_killed_right_after_spawning(self) -> None:
        """The parent may die before the shim has asked for the death signal.

        The kernel then never sends it, and the orphan runs on: the shim must
        notice that its parent changed and end itself.
        """
        self.assertFalse((yield self.orphan_survives("at-once")), "sleep outlived its parent")


class EnvironmentTests(RunnerTestCase):
    @inlineCallbacks
    def test_children_import_this_dpmd_from_any_directory(self) -> None:
        """The merger must be this checkout's, even when another dpmd is installed."""
        program = "import dpmd, os; print(dpmd.__file__); print(os.getcwd())"
        child, lines = self.spawn([sys.executable, "-c", program], directory=str(self.directory))
        self.assertEqual((yield child.wait()), ExitStatus(0))
        self.assertEqual(
            [Path(line.decode()).resolve() for line in lines],
            [Path(dpmd.__file__).resolve(), self.directory.resolve()],
        )

    @inlineCallbacks
    def test_an_explicit_environment_is_used_as_given(self) -> None:
        """Callers that pass ``environment`` (rsync's, say) get exactly that environment."""
        program = "import os, json; print(json.dumps(dict(os.environ)))"
        child, lines = self.spawn(
            [*PYTHON, program], environment={"ONLY": "this", "PATH": os.environ["PATH"]}
        )
        yield child.wait()
        environment = json.loads(lines[0])
        environment.pop("LC_CTYPE", None)  # Python's own locale coercion may add it
        self.assertEqual(environment, {"ONLY": "this", "PATH": os.environ["PATH"]})


class CommandTests(SynchronousTestCase):
    def test_child_environment_puts_dpmd_first_once(self) -> None:
        """This checkout comes first on PYTHONPATH, other entries are kept, none is doubled."""
        root = str(Path(dpmd.__file__).resolve().parent.parent)
        self.patch(os, "environ", {"PYTHONPATH": os.pathsep.join(["/elsewhere", root]), "A": "1"})
        environment = child_environment({"B": "2"})
        self.assertEqual(environment["PYTHONPATH"].split(os.pathsep), [root, "/elsewhere"])
        self.assertEqual((environment["A"], environment["B"]), ("1", "2"))

    def test_children_run_with_the_configured_interpreter(self) -> None:
        """By default the server's own Python, where its dependencies are installed."""
        python = build_config({}, environ={}).python
        self.assertEqual(python, sys.executable)
        self.assertEqual(
            python_command(python, "dpmd.merge", "--json", "spec.json"),
            [sys.executable, "-m", "dpmd.merge", "--json", "spec.json"],
        )


class MemoryTests(RunnerTestCase):
    """A child's peak memory: the kernel's high-water mark, seen whenever it speaks."""

    def setUp(self) -> None:
        if not Path("/proc/self/status").exists():
            raise SkipTest("the high-water mark is read from /proc")
        super().setUp()

    def test_the_peak_of_a_process(self) -> None:
        self.assertGreater(memory_peak(os.getpid()) or 0, 10 << 20, "this Python holds more")
        self.assertIsNone(memory_peak(1 << 30), "no process has a pid beyond pid_max")

    @inlineCallbacks
    def test_a_peak_already_freed_is_still_seen(self) -> None:
        """64 MiB held then freed before the child speaks: the high-water mark keeps it."""
        program = ("import sys\n"
                   "block = b'x' * (64 << 20); del block\n"
                   "print('done', flush=True); sys.stdin.readline()\n")  # fmt: skip
        child, lines = self.spawn([*PYTHON, program], keep_stdin=True)
        yield wait_until(lambda: lines, "the child's line")
        child.write(b"end\n")  # alive until the line has been read (and its memory looked at)
        yield child.wait()
        self.assertEqual(lines, [b"done"])
        self.assertGreaterEqual(child.peak_rss or 0, 64 << 20)
        self.assertLess(child.peak_rss or 0, 1 << 30)

    @inlineCallbacks
    def test_a_child_that_never_speaks_has_no_peak_seen(self) -> None:
        """Nothing is read from the shim before the program runs: no guess, None."""
        child, _ = self.spawn([*PYTHON, "import time; time.sleep(0.1)"])
        yield child.wait()
        self.assertIsNone(child.peak_rss)

    def test_a_reported_peak_counts_only_if_larger(self) -> None:
        child = ChildProcess("test", ["x"], reactor)
        child.note_peak(None)
        self.assertIsNone(child.peak_rss)
        child.note_peak(5 << 20)
        child.note_peak(3 << 20)
        self.assertEqual(child.peak_rss, 5 << 20)
