"""``twistd dpmd`` as a real child process: start-up errors and ``/dpm/Exit``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import TestCase

import dpmd

SOURCE_ROOT = str(Path(dpmd.__file__).parent.parent)
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def twistd(
    directory: Path,
    *arguments: str,
    logfile: Path | None = None,
    daemon_options: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Run ``twistd -n dpmd`` in ``directory`` with this checkout importable.

    With ``daemon_options`` (twistd's own, e.g. the pid file) it runs in twistd's
    default daemon mode instead of in the foreground.
    """
    environ = dict(os.environ, PYTHONPATH=SOURCE_ROOT, DATAROOT=str(directory))
    log_options = [f"--logfile={logfile}"] if logfile else []
    mode = ["--nodaemon", "--pidfile="] if daemon_options is None else daemon_options
    return subprocess.Popen(
        [*TWISTD, *mode, *log_options, "dpmd", *arguments],
        cwd=directory,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(path: Path, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"twistd ended early: {process.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.05)


class TwistdTests(TestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        # AF_UNIX paths are short (108 bytes): keep sockets out of the deep trial folder.
        sockets = tempfile.mkdtemp(prefix="dpmd-")
        self.addCleanup(shutil.rmtree, sockets, True)
        self.sockets = Path(sockets)
        self.socket_path = self.sockets / "dpmd.sock"

    def start(self) -> subprocess.Popen[bytes]:
        process = twistd(self.directory, "--listen", f"unix:{self.socket_path}")
        self.addCleanup(process.communicate)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        wait_for(self.socket_path, process)
        return process

    def test_exit_replies_then_ends_with_status_zero(self) -> None:
        process = self.start()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(self.socket_path))
            client.sendall(b'{"jsonrpc":"2.0","id":7,"method":"/dpm/Exit"}\n')
            received = b""
            while chunk := client.recv(4096):
                received += chunk
        self.assertEqual(
            json.loads(received), {"jsonrpc": "2.0", "id": 7, "result": "dpmd is shutting down"}
        )
        self.assertEqual(process.wait(timeout=30), 0)

    def test_second_server_on_the_workspace_names_the_holder(self) -> None:
        first = self.start()
        second = twistd(self.directory, "--listen", f"unix:{self.sockets / 'other.sock'}")
        _out, err = second.communicate(timeout=60)
        self.assertEqual(second.returncode, 1)
        self.assertEqual(len(err.decode().strip().splitlines()), 1, err)
        self.assertIn(f"process {first.pid}", err.decode())
        first.terminate()

    def test_bad_configuration_is_one_line_and_status_one(self) -> None:
        config = self.directory / "dpmd.yaml"
        config.write_text("limits:\n  merge: many\n")
        process = twistd(self.directory, "--config", str(config))
        _out, err = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 1)
        self.assertEqual(
            err.decode().strip(),
            "dpmd: configuration key 'limits.merge': must be an integer, not a string",
        )

    def test_bind_failure_is_one_line_and_status_one(self) -> None:
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        process = twistd(self.directory, "--listen", f"tcp:{port}:interface=127.0.0.1")
        _out, err = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 1)
        lines = err.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertIn(f"cannot listen on 'tcp:{port}:interface=127.0.0.1'", lines[0])

    def test_daemon_mode_bind_failure_ends_the_launcher_with_the_reason(self) -> None:
        """twistd forks before the port is bound: the launcher must not wait for ever."""
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        pidfile = self.directory / "twistd.pid"
        process = twistd(
            self.directory, "--listen", f"tcp:{port}:interface=127.0.0.1",
            logfile=self.directory / "twistd.log", daemon_options=[f"--pidfile={pidfile}"],
        )  # fmt: skip
        started = time.monotonic()
        _out, err = process.communicate(timeout=30)
        self.assertEqual(process.returncode, 1)
        self.assertLess(time.monotonic() - started, 20)
        first = err.decode().splitlines()[0]
        expected = f"cannot listen on 'tcp:{port}:interface=127.0.0.1': Address already in use"
        self.assertEqual(first, f"dpmd: {expected}")
        self.assertFalse(pidfile.exists(), "no stale pid file")

    def test_daemon_mode_locked_workspace_is_one_line(self) -> None:
        first = self.start()
        pidfile = self.directory / "second.pid"
        second = twistd(self.directory, "--listen", f"unix:{self.sockets / 'other.sock'}",
                        daemon_options=[f"--pidfile={pidfile}"])  # fmt: skip
        _out, err = second.communicate(timeout=30)
        self.assertEqual(second.returncode, 1)
        self.assertIn(f"process {first.pid}", err.decode().splitlines()[0])
        self.assertFalse(pidfile.exists())
        first.terminate()

