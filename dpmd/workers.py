"""Child-process supervision: spawn, read JSON lines, stop with TERM then KILL.

Every child runs in a process group of its own, so that a stop reaches the
programs it starts (``ssh`` under ``rsync``), and asks the kernel to send it
SIGTERM if dpmd dies: after a ``kill -9`` of the server no orphan goes on
writing into a workspace that the restarted server is about to clean up,
and the children still get to tidy up (rsync keeps its partial file so the
next attempt resumes; the merger removes its temporary file).  Both are
done by a tiny Python shim that then ``exec``s the real program, because
``spawnProcess`` offers no pre-exec hook.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import (
    IDelayedCall,
    IProcessTransport,
    IReactorProcess,
    IReactorTime,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

import dpmd
from dpmd.logs import get_logger

log = get_logger(__name__)

CANNOT_RUN = "dpmd: cannot run"
"""How the shim begins the one stderr line it writes when the program cannot be started."""

_SHIM = (
    f"CANNOT_RUN={CANNOT_RUN!r}\n"
    "import os,sys\n"
    "os.setpgid(0,0)\n"
    "if sys.platform.startswith('linux'):\n"
    " import ctypes;ctypes.CDLL(None).prctl(1,15)\n"  # PR_SET_PDEATHSIG, SIGTERM
    # The parent may have died before prctl: then no signal will ever come.
    " if os.getppid()!=int(sys.argv[1]):os._exit(1)\n"
    "try:os.execvp(sys.argv[2],sys.argv[2:])\n"
    # A program that cannot be started says so on one line, with the shells' statuses.
    "except OSError as e:\n"
    " sys.stderr.write(f'{CANNOT_RUN} {sys.argv[2]}: {e.strerror}\\n');sys.stderr.flush()\n"
    " os._exit(127 if e.errno==2 else 126)\n"
)

MAX_LINE = 1 << 20
"""Longest stdout line a child may write; a longer one is cut and logged."""


@dataclass(frozen=True)
class ExitStatus:
    """How a child ended: an exit code, or the signal that killed it."""

    code: int | None
    signal: int | None = None

    @property
    def ok(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        if self.signal is not None:
            return f"killed by {signal.Signals(self.signal).name}"
        return f"exit status {self.code}"


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for children: ours, with dpmd importable, plus ``extra``."""
    environment = dict(os.environ)
    package_root = str(Path(dpmd.__file__).resolve().parent.parent)
    paths = [package_root, *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    environment.update(extra or {})
    return environment


def python_command(python: str, module: str, *arguments: str) -> list[str]:
    """Run one of dpmd's own modules with the interpreter the configuration names."""
    return [python, "-m", module, *arguments]


STDERR_TAIL = 4096
"""Bytes of a child's stderr kept for error messages when it is not logged to a file."""

MEMORY_SAMPLE_INTERVAL = 1.0
"""Seconds between two looks at a child's memory when it speaks (a /proc read each)."""


def memory_peak(pid: int) -> int | None:
    """The most memory a running process has held so far, in bytes, or None if unknown.

    On Linux the kernel keeps the high-water mark of the resident set
    (``VmHWM``), so one look sees the peak since the program started, not
    just the moment (a zombie has none: None); elsewhere the resident set
    now (psutil) is the best there is.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
        return None
    except FileNotFoundError:
        if sys.platform.startswith("linux"):
            return None  # gone
    except (OSError, ValueError, IndexError):
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss) or None
    except psutil.Error:
        return None


class ChildProcess(ProcessProtocol):
    """One supervised child; ``wait()`` gives its ``ExitStatus`` and never fails."""

    def __init__(
        self,
        kind: str,
        argv: Sequence[str],
        clock: IReactorTime,
        on_line: Callable[[bytes], None] | None = None,
        kill_group: Callable[[int, int], None] = os.killpg,
        silence_timeout: float | None = None,
        grace: float = 30.0,
        keep_stdin: bool = False,
    ) -> None:
        self.kind = kind
        self._keep_stdin = keep_stdin
        self._kill_group = kill_group
        self._silence_timeout = silence_timeout
        self._grace = grace
        self._silence_call: IDelayedCall | None = None
        self.timed_out = False
        self.argv = list(argv)
        self.pid: int | None = None
        self.result: ExitStatus | None = None
        self.stderr_tail = b""
        self._waiters: list[Deferred[ExitStatus]] = []
        self._clock = clock
        self._on_line = on_line
        self._partial = b""
        self._discarding = False
        self._kill_call: IDelayedCall | None = None
        self.listeners: list[Callable[[], None]] = []
        """Called whenever the child writes something (a watchdog's ear)."""
        self.stalled_for: float | None = None
        """Set when a watchdog stopped the child for its silence: how long it was silent."""
        self.peak_rss: int | None = None
        """The most memory the child was seen to hold (bytes), or None if never seen."""
        self._memory_seen_at: float | None = None

    @property
    def _process(self) -> IProcessTransport:
        transport = self.transport
        assert transport is not None, "the child has been started"
        return transport

    def connectionMade(self) -> None:
        self.pid = self._process.pid
        if not self._keep_stdin:
            self._process.closeStdin()
        self._heard()

    def write(self, data: bytes) -> None:
        """Send ``data`` to the stdin of a child started with ``keep_stdin``, at once.

        A process transport writes on the reactor's next turn, after every other
        event of this one, and a child that waits for its input (the vetting
        child) would wait for all of them.  What the pipe does not take now is
        written on that turn, as usual.
        """
        self._process.write(data)
        stdin = getattr(self._process, "pipes", {}).get(0)  # twisted.internet.process.Process
        if stdin is not None:
            stdin.doWrite()

    def _heard(self) -> None:
        """The child said something: restart the silence timer, tell the listeners."""
        for listener in self.listeners:
            listener()
        if self._silence_timeout is None or not self.running:
            return
        if self._silence_call is not None and self._silence_call.active():
            self._silence_call.reset(self._silence_timeout)
        else:
            self._silence_call = self._clock.callLater(self._silence_timeout, self._silent)

    def _silent(self) -> None:
        self._silence_call = None
        self.timed_out = True
        log.warn(
            "{kind} (pid {pid}) was silent for {seconds} s; stopping it",
            kind=self.kind,
            pid=self.pid,
            seconds=self._silence_timeout,
        )
        self.terminate(self._grace)

    def outReceived(self, data: bytes) -> None:
        self._heard()
        # Only the program itself writes to stdout (the shim that execs it does not), so
        # what is seen here is the program's memory, at most once a second.
        now = self._clock.seconds()
        if self._memory_seen_at is None or now - self._memory_seen_at >= MEMORY_SAMPLE_INTERVAL:
            self._memory_seen_at = now
            self.sample_memory()
        # Lines end with \n; progress meters (rsync) end theirs with \r.
        data = data.replace(b"\r", b"\n")
        if self._discarding:  # the rest of a line already cut
            end = data.find(b"\n")
            if end < 0:
                return
            data, self._discarding = data[end + 1 :], False
        self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        if len(self._partial) > MAX_LINE:
            log.warn("{kind} wrote an over-long line; it was cut", kind=self.kind)
            lines.append(self._partial[:MAX_LINE])
            self._partial, self._discarding = b"", True
        for line in lines:
            if line.strip() and self._on_line is not None:
                self._on_line(line)

    def errReceived(self, data: bytes) -> None:
        self._heard()
        self.stderr_tail = (self.stderr_tail + data)[-STDERR_TAIL:]

    def error_lines(self) -> list[str]:
        """The non-blank lines the child wrote to stderr (when it was captured), oldest first."""
        text = self.stderr_tail.decode(errors="replace")
        return [line.strip() for line in text.splitlines() if line.strip()]

    def last_error_line(self) -> str:
        lines = self.error_lines()
        return lines[-1] if lines else ""

    def describe_end(self) -> str:
        """How it ended, in words: a watchdog's stop is said as such."""
        if self.stalled_for is not None:
            return f"stalled: no output for {self.stalled_for:.0f} s, so it was stopped"
        return self.result.describe() if self.result is not None else "still running"

    def start_failure(self) -> str | None:
        """Why the program could not be started at all (not found, not executable), or None."""
        if self.result is None or self.result.code not in (126, 127):
            return None
        for line in self.error_lines():
            if line.startswith(CANNOT_RUN):
                return line.removeprefix(CANNOT_RUN).strip()
        return None

    def processEnded(self, reason: Failure) -> None:
        for call in (self._kill_call, self._silence_call):
            if call is not None and call.active():
                call.cancel()
        if self._partial.strip() and self._on_line is not None:
            self._on_line(self._partial)
        self._partial = b""
        # It says nothing more: let go of whoever listened (they may hold it in turn).
        self._on_line = None
        self.listeners = []
        value = reason.value
        if isinstance(value, ProcessDone):
            self.result = ExitStatus(0)
        elif isinstance(value, ProcessTerminated):
            self.result = ExitStatus(value.exitCode, value.signal)
        else:
            self.result = ExitStatus(None, None)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self.result)

    def wait(self) -> Deferred[ExitStatus]:
        """A Deferred of its own for each caller, fired when the child has ended."""
        if self.result is not None:
            return succeed(self.result)
        waiter: Deferred[ExitStatus] = Deferred()
        self._waiters.append(waiter)
        return waiter

    @property
    def running(self) -> bool:
        return self.result is None

    def sample_memory(self) -> None:
        """Look at the child's memory now (a /proc read) and keep the peak."""
        if self.running and self.pid is not None:
            self.note_peak(memory_peak(self.pid))

    def note_peak(self, peak: int | None) -> None:
        """A peak seen, or reported by the child itself (the merger's own ``ru_maxrss``)."""
        if peak is not None and (self.peak_rss is None or peak > self.peak_rss):
            self.peak_rss = peak

    def describe(self) -> dict[str, Any]:
        """For the internal status: what runs, and how much memory it holds now."""
        description: dict[str, Any] = {
            "kind": self.kind, "pid": self.pid, "argv": self.argv, "rss_bytes": None
        }  # fmt: skip
        if self.running and self.pid is not None:
            with contextlib.suppress(psutil.Error):
                description["rss_bytes"] = psutil.Process(self.pid).memory_info().rss
        return description

    def signal_group(self, signum: int) -> None:
        """Signal the child's process group (falling back to the child alone)."""
        if self.pid is None or not self.running:
            return
        try:
            self._kill_group(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            # The shim has not made its group yet (or it is not ours): the child alone.
            self._process.signalProcess(signum)

    def terminate(self, timeout: float) -> Deferred[ExitStatus]:
        """SIGTERM now, SIGKILL after ``timeout`` seconds; fires when the child is gone."""
        if self.running and self._kill_call is None:  # a second call waits for the first
            self.signal_group(signal.SIGTERM)
            self._kill_call = self._clock.callLater(timeout, self._kill)
        return self.wait()

    def _kill(self) -> None:
        self._kill_call = None
        log.warn("{kind} (pid {pid}) ignored SIGTERM; killing it", kind=self.kind, pid=self.pid)
        self.signal_group(signal.SIGKILL)


class ProcessRunner:
    """Spawns children on an injected reactor and keeps track of the running ones."""

    def __init__(
        self,
        reactor: IReactorProcess,
        kill_group: Callable[[int, int], None] = os.killpg,
        grace: float = 30.0,
    ) -> None:
        self._reactor = reactor
        self._kill_group = kill_group
        self._grace = grace
        self.running: set[ChildProcess] = set()

    def spawn(
        self,
        kind: str,
        argv: Sequence[str],
        *,
        on_line: Callable[[bytes], None] | None = None,
        stderr_path: Path | None = None,
        environment: Mapping[str, str] | None = None,
        directory: str | None = None,
        silence_timeout: float | None = None,
        keep_stdin: bool = False,
    ) -> ChildProcess:
        """Start ``argv``; stdout lines go to ``on_line``, stderr is appended to a file.

        With ``keep_stdin`` the child's stdin stays open for ``ChildProcess.write``
        (else it is closed at once). With ``silence_timeout``, a child that
        writes nothing for that many seconds is stopped (TERM, then KILL after
        the runner's grace period) and marked ``timed_out``.
        """
        clock = IReactorTime(self._reactor)
        child = ChildProcess(kind, argv, clock, on_line, self._kill_group, silence_timeout,
                             self._grace, keep_stdin)  # fmt: skip
        stderr_fd = (
            os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            if stderr_path is not None
            else "r"
        )
        shim = [sys.executable, "-S", "-I", "-c", _SHIM, str(os.getpid()), *argv]
        try:
            self._reactor.spawnProcess(
                child,
                sys.executable,
                shim,
                env=dict(environment) if environment is not None else child_environment(),
                path=directory,
                childFDs={0: "w", 1: "r", 2: stderr_fd},
            )
        finally:
            if isinstance(stderr_fd, int):
                os.close(stderr_fd)
        self.running.add(child)
        child.wait().addCallback(lambda _: self.running.discard(child))
        log.debug("started {kind} (pid {pid}): {argv}", kind=kind, pid=child.pid, argv=argv)
        return child
