"""Moving files between hosts with the tools operators trust: rsync over ssh.

Every command is an argument vector, never a shell line: host, user and path
come from specifications and are checked at ``QueueDaq`` (``dpmd.locations``),
rsync gets ``--protect-args`` so the remote side does not split the path
either, and the one remote command (``mv``) quotes its operands for the
remote shell.  A transfer writes to a hidden ``.dpmd-part`` name that is
renamed when complete, keeps a partial file when it is interrupted
(``--partial``) so the next attempt resumes, and is retried with a doubling
back-off before the stage gives up.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater

from dpmd.config import TransferConfig
from dpmd.locations import RemoteFile
from dpmd.stages import StageHost
from dpmd.workers import ChildProcess

PART_SUFFIX = ".dpmd-part"
_PROGRESS = re.compile(rb"^\s*([\d,.]+)\s+(\d+)%")

RSYNC_EXIT = {
    5: "error starting the client-server protocol",
    10: "error in socket I/O",
    11: "error in file I/O",
    12: "error in the rsync protocol data stream",
    23: "some files could not be transferred",
    24: "the source file vanished",
    30: "timeout in data send/receive",
    35: "timeout waiting for the daemon connection",
    255: "ssh failed (host unreachable, authentication refused?)",
}


class TransferFailed(Exception):
    """A transfer that still failed after its retries; the text says why.

    ``terminal``: the program itself cannot be run; no retry helps until the
    configuration (or the machine) changes.
    """

    def __init__(self, reason: str, terminal: bool = False) -> None:
        super().__init__(reason)
        self.terminal = terminal


def part_name(final_name: str) -> str:
    return f".{final_name}{PART_SUFFIX}"


def ssh_command(config: TransferConfig) -> list[str]:
    return [config.ssh, *config.ssh_options]


def rsync_argv(config: TransferConfig, source: str, destination: str) -> list[str]:
    return [
        config.rsync,
        "--partial",
        "--times",
        "--fsync",
        "--protect-args",
        "--info=progress2",
        f"--timeout={max(1, int(config.timeout))}",
        *config.rsync_options,
        "-e",
        shlex.join(ssh_command(config)),
        "--",
        source,
        destination,
    ]


def remote_script_argv(
    config: TransferConfig, remote: RemoteFile, script: str, *paths: str
) -> list[str]:
    """``ssh host SCRIPT``: ``{0}``, ``{1}``… in the script become the quoted ``paths``.

    ssh hands its command to the remote user's shell, so every operand is
    quoted for it; the script itself is ours, never a specification's.
    """
    command = script.format(*(shlex.quote(path) for path in paths))
    return [*ssh_command(config), "--", remote.login, command]


@dataclass
class Meter:
    """Bytes done of one transfer, from rsync's ``--info=progress2`` lines.

    The total is the file's size when it was learnt before the transfer (it
    is then exact); otherwise it is guessed from rsync's whole percentage.
    Bytes done never go down within a transfer, nor beyond a known total.
    """

    done: int = 0
    total: int = 0
    exact: bool = False

    def line_received(self, line: bytes) -> bool:
        match = _PROGRESS.match(line)
        if not match:
            return False
        done = int(match.group(1).replace(b",", b"").replace(b".", b""))
        self.done = max(self.done, min(done, self.total) if self.exact else done)
        percent = int(match.group(2))
        if percent and not self.exact:
            self.total = max(self.total, self.done * 100 // percent)
        return True


def describe_failure(child: ChildProcess, timeout: float) -> str:
    if child.timed_out:
        return f"no progress for {timeout:g} s"
    if child.stalled_for is not None:
        return child.describe_end()
    status = child.result
    assert status is not None
    if status.signal is not None:
        return status.describe()
    meaning = RSYNC_EXIT.get(status.code or 0, "failed")
    detail = first_cause(child.error_lines())
    return f"exit status {status.code} ({meaning})" + (f": {detail}" if detail else "")


def first_cause(lines: list[str]) -> str:
    """rsync reports the cause first (``rsync: … failed: No such file``), then summaries."""
    causes = [line for line in lines if line.startswith("rsync:") or line.startswith("ssh:")]
    return (causes or lines or [""])[0]


def run_with_retries(
    host: StageHost,
    kind: str,
    argv: list[str],
    meter: Meter,
    on_progress: Callable[[], None],
) -> Deferred[None]:
    """Run one transfer in a transfer slot, retrying with back-off; progress feeds ``meter``."""

    def line_received(line: bytes) -> None:
        if meter.line_received(line):
            on_progress()

    return run_transfer_command(host, kind, argv, line_received)


SIZE_PROBE = "wc -c < {0}"
"""The size of a remote file, learnt before it is fetched: progress then has its total."""


def remote_size(host: StageHost, remote: RemoteFile) -> Deferred[int | None]:
    """The remote file's size in bytes, or None when it cannot be learnt (rsync will say why)."""
    argv = remote_script_argv(host.config.transfer, remote, SIZE_PROBE, remote.path)

    def size(lines: list[str]) -> int | None:
        return int(lines[-1]) if lines and lines[-1].isdigit() else None

    # One attempt: a host that cannot be reached is rsync's to report, with its retries.
    return run_remote(host, argv, retries=0).addCallbacks(size, lambda failure: None)


def run_remote(host: StageHost, argv: list[str], retries: int | None = None) -> Deferred[list[str]]:
    """Run a short remote command (with the transfer retries); fires with its output lines."""
    lines: list[str] = []

    def line_received(line: bytes) -> None:
        lines.append(line.decode(errors="replace").strip())

    def answer(_: Any) -> list[str]:
        return lines

    def start_over() -> None:
        lines.clear()

    ran = run_transfer_command(host, "ssh", argv, line_received, start_over, retries)
    return ran.addCallback(answer)


@inlineCallbacks
def run_transfer_command(
    host: StageHost,
    kind: str,
    argv: list[str],
    on_line: Callable[[bytes], None],
    on_retry: Callable[[], None] = lambda: None,
    retries: int | None = None,
) -> Any:
    """Run a command of the transfer tools in a transfer slot, retrying with back-off
    (``transfer.retries`` times unless ``retries`` says otherwise)."""
    transfer = host.config.transfer
    attempts = (transfer.retries if retries is None else retries) + 1
    for attempt in range(attempts):
        yield host.transfer_slots.acquire()
        on_retry()
        try:
            child = host.spawn(kind, argv, on_line=on_line, silence_timeout=transfer.timeout)
            status = yield child.wait()
        finally:
            host.transfer_slots.release()
        if status.ok:
            return
        cannot_run = child.start_failure()
        if cannot_run is not None:
            setting = f"transfer.{kind}"
            what = "command not found" if status.code == 127 else cannot_run
            raise TransferFailed(
                f"{argv[0]}: {what} — install {kind} or set {setting} (not retried)",
                terminal=True,
            )
        reason = describe_failure(child, transfer.timeout)
        if attempt + 1 == attempts:
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            raise TransferFailed(f"{reason}{tries}")
        delay = transfer.retry_delay * 2**attempt
        yield deferLater(host.clock, delay, lambda: None)
