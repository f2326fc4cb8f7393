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
    directory: Path, *arguments: str, logfile: Path | None = None
) -> subprocess.Popen[bytes]:
    """Run ``twistd -n dpmd`` in ``directory`` with this checkout importable."""
    environ = dict(os.environ, PYTHONPATH=SOURCE_ROOT, DATAROOT=str(directory))
    log_options = [f"--logfile={logfile}"] if logfile else []
    return subprocess.Popen(
        [*TWISTD, "--nodaemon", "--pidfile=", *log_options, "dpmd", *arguments],
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
