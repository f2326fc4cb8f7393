"""``twistd dpmd`` as a real child process: start-up errors and ``/dpm/Exit``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml
from twisted.trial.unittest import TestCase

import dpmd
from tests.waiting import block_for_file, block_for_line, block_until

SOURCE_ROOT = str(Path(dpmd.__file__).parent.parent)
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def twistd(
    directory: Path,
    *arguments: str,
    logfile: Path | None = None,
    daemon_options: list[str] | None = None,
    **variables: str,
) -> subprocess.Popen[bytes]:
    """Run ``twistd -n dpmd`` in ``directory`` with this checkout importable.

    With ``daemon_options`` (twistd's own, e.g. the pid file) it runs in twistd's
    default daemon mode instead of in the foreground.  ``$DATAROOT`` is
    ``directory`` unless ``variables`` say otherwise.
    """
    environ = {**os.environ, "PYTHONPATH": SOURCE_ROOT, "DATAROOT": str(directory), **variables}
    log_options = [f"--logfile={logfile}"] if logfile else []
    mode = ["--nodaemon", "--pidfile="] if daemon_options is None else daemon_options
    return subprocess.Popen(
        [*TWISTD, *mode, *log_options, "dpmd", *arguments],
        cwd=directory,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def gone(path: Path) -> None:
    """Until ``path`` is gone.

    twistd's daemon tells the launcher of a failed start first and removes its
    pid file just after, so the launcher may end while the file still exists.
    """
    block_until(lambda: not path.exists(), f"{path} to be removed (no stale pid file)", 10)


def _cmdline_has(process: psutil.Process, text: str) -> bool:
    try:
        return text in process.cmdline()
    except psutil.Error:
        return False


def ask(path: Path, method: str) -> Any:
    """One JSON-RPC call over the unix socket at ``path``: its reply, once the server serves.

    The socket exists from the moment the listeners bind, before recovery opens the store;
    a reply proves the server is past start-up."""
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(60)
        client.connect(str(path))
        client.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method}).encode() + b"\n")
        received = b""
        while not received.endswith(b"\n"):
            chunk = client.recv(4096)
            if not chunk:
                break
            received += chunk
    return json.loads(received)


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
        block_for_file(self.socket_path, process)
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

    def busy_port(self) -> int:
        """A port this test holds, so that dpmd cannot bind it."""
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        self.addCleanup(busy.close)
        return int(busy.getsockname()[1])

    def start_daemon_on(self, port: int, *arguments: str, **environ: str) -> tuple[int, str]:
        return self.start_daemon(f"tcp:{port}:interface=127.0.0.1", *arguments, **environ)

    def start_daemon(self, listen: str, *arguments: str, **environ: str) -> tuple[int, str]:
        """``twistd dpmd`` in daemon mode, listening on ``listen``: the launcher's status and
        stderr, once the daemon (which outlives the launcher) has ended too."""
        pidfile = self.directory / "twistd.pid"
        process = twistd(
            self.directory, "--listen", listen, *arguments,
            logfile=self.directory / "twistd.log", daemon_options=[f"--pidfile={pidfile}"],
            **environ,
        )  # fmt: skip
        started = time.monotonic()
        _out, err = process.communicate(timeout=30)
        self.assertLess(time.monotonic() - started, 20, "the launcher must not wait for ever")
        daemons = [daemon for daemon in psutil.process_iter() if _cmdline_has(daemon, listen)]
        _gone, alive = psutil.wait_procs(daemons, timeout=30)
        self.assertEqual(alive, [], "the daemon ended")
        gone(pidfile)
        return process.returncode, err.decode()

    def test_daemon_mode_bind_failure_is_one_line_a_log_line_and_no_workspace(self) -> None:
        """twistd forks before the port is bound: the launcher says only dpmd's line."""
        port = self.busy_port()
        status, err = self.start_daemon_on(port)
        expected = f"cannot listen on 'tcp:{port}:interface=127.0.0.1': Address already in use"
        self.assertEqual((status, err), (1, f"dpmd: {expected}\n"))
        log = (self.directory / "twistd.log").read_text()
        self.assertIn(f"dpmd cannot start: {expected}", log)
        self.assertNotIn("Traceback", log)
        self.assertEqual(sorted(path.name for path in self.directory.iterdir()), ["twistd.log"])

    def test_daemon_mode_store_failure_after_binding_is_one_line_too(self) -> None:
        """The store is opened once the ports are bound, in the daemon: still one line."""
        store = self.directory / "dpm" / "dpmd.sqlite3"
        store.mkdir(parents=True)  # a folder where the store's file should be
        status, err = self.start_daemon(f"unix:{self.socket_path}")
        self.assertEqual(status, 1)
        [line] = err.splitlines()
        self.assertTrue(line.startswith(f"dpmd: cannot open the store {store}: "), line)
        log = (self.directory / "twistd.log").read_text()
        self.assertIn(f"dpmd cannot start: {line.removeprefix('dpmd: ')}", log)
        self.assertNotIn("Traceback", log)
        self.assertTrue(store.is_dir(), "a workspace it did not make is kept")

    def test_a_failed_start_keeps_a_workspace_it_did_not_make(self) -> None:
        workspace = self.directory / "dpm"
        workspace.mkdir()
        (workspace / "dpmd.sqlite3").write_bytes(b"the night's DAQs")
        status, err = self.start_daemon_on(self.busy_port())
        self.assertEqual((status, len(err.splitlines())), (1, 1), err)
        self.assertEqual((workspace / "dpmd.sqlite3").read_bytes(), b"the night's DAQs")

    def test_a_failed_start_removes_the_dataroot_it_made_and_only_that(self) -> None:
        dataroot = self.directory / "data" / "dpmd"
        status, err = self.start_daemon_on(
            self.busy_port(), "--create-dataroot", DATAROOT=str(dataroot)
        )
        self.assertEqual((status, len(err.splitlines())), (1, 1), err)
        self.assertFalse((self.directory / "data").exists())
        self.assertTrue((self.directory / "twistd.log").exists())

    def test_foreground_bind_failure_leaves_no_workspace_and_no_pid_file_either(self) -> None:
        port = self.busy_port()
        pidfile = self.directory / "twistd.pid"
        process = twistd(
            self.directory, "--listen", f"tcp:{port}:interface=127.0.0.1",
            daemon_options=["--nodaemon", f"--pidfile={pidfile}"],
        )  # fmt: skip
        _out, err = process.communicate(timeout=60)
        self.assertEqual((process.returncode, len(err.splitlines())), (1, 1), err)
        self.assertEqual(list(self.directory.iterdir()), [])

    def test_daemon_mode_locked_workspace_is_one_line(self) -> None:
        first = self.start()
        pidfile = self.directory / "second.pid"
        second = twistd(self.directory, "--listen", f"unix:{self.sockets / 'other.sock'}",
                        daemon_options=[f"--pidfile={pidfile}"])  # fmt: skip
        _out, err = second.communicate(timeout=30)
        self.assertEqual(second.returncode, 1)
        [line] = err.decode().splitlines()
        self.assertIn(f"process {first.pid}", line)
        gone(pidfile)
        first.terminate()


class OperatorTests(TestCase):
    """What an operator checks and does before and during a night."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()

    def run_twistd(self, *arguments: str, dataroot: Path | None = None) -> Any:
        environ = dict(os.environ, PYTHONPATH=SOURCE_ROOT,
                       DATAROOT=str(dataroot or self.directory))  # fmt: skip
        return subprocess.run([*TWISTD, "--nodaemon", "--pidfile=", "dpmd", *arguments],
                              cwd=self.directory, env=environ, capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    def test_version(self) -> None:
        result = self.run_twistd("--version")
        expected = (0, f"dpmd {dpmd.__version__}")
        self.assertEqual((result.returncode, result.stdout.strip()), expected)

    def test_print_config_shows_the_configuration_in_force(self) -> None:
        config = self.directory / "dpmd.yaml"
        config.write_text("limits:\n  merge: 3\nwatchdog:\n  stall: 20\n")
        result = self.run_twistd("--config", str(config), "--workspace", "night", "--print-config")
        self.assertEqual(result.returncode, 0, result.stderr)
        document = yaml.safe_load(result.stdout)
        self.assertEqual(document["limits"]["merge"], 3)  # from the file
        self.assertEqual(document["watchdog"]["stall"], 20.0)
        self.assertEqual(document["dataroot"], str(self.directory))  # from $DATAROOT
        self.assertEqual(document["workspace"], str(self.directory / "night"))  # command line
        self.assertEqual(document["limits"]["daq"], 1)  # the default
        self.assertFalse((self.directory / "night").exists(), "nothing is started")

    def test_a_missing_dataroot_is_refused_unless_asked_to_create_it(self) -> None:
        missing = self.directory / "unmounted" / "data"
        result = self.run_twistd("--listen", "tcp:0:interface=127.0.0.1", dataroot=missing)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip().splitlines(), [
            f"dpmd: dataroot {missing} does not exist (a typo, or a data disk that is not "
            "mounted?); create it, or start with --create-dataroot"])  # fmt: skip
        self.assertFalse(missing.exists())
        environ = dict(os.environ, PYTHONPATH=SOURCE_ROOT, DATAROOT=str(missing))
        sockets = Path(tempfile.mkdtemp(prefix="dpmd-"))
        self.addCleanup(shutil.rmtree, sockets, True)
        process = subprocess.Popen(
            [*TWISTD, "--nodaemon", "--pidfile=", "dpmd", "--create-dataroot",
             "--listen", f"unix:{sockets / 's'}"],
            cwd=self.directory, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.addCleanup(lambda: process.poll() is None and process.kill())
        block_for_file(sockets / "s", process)
        self.assertIn("result", ask(sockets / "s", "/dpm/QueryStorageStatus"))
        self.assertTrue((missing / "dpm" / "dpmd.sqlite3").exists())
        process.terminate()
        process.communicate(timeout=60)

    def serve(self, log: Path) -> subprocess.Popen[bytes]:
        """A server that has answered a request: its reactor runs, with twistd's signal
        handlers installed (a signal before that finds another handler, or none)."""
        sockets = Path(tempfile.mkdtemp(prefix="dpmd-"))
        self.addCleanup(shutil.rmtree, sockets, True)
        process = twistd(self.directory, "--listen", f"unix:{sockets / 's'}", logfile=log)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        block_for_file(sockets / "s", process)
        self.assertIn("result", ask(sockets / "s", "/dpm/QueryStorageStatus"))
        return process

    def test_sighup_and_sigterm_stop_cleanly(self) -> None:
        """Both stop the server the clean way; after SIGTERM twistd ends by that signal
        (its convention, which systemd counts as a clean stop), after SIGHUP with 0."""
        for signum, status in ((signal.SIGHUP, 0), (signal.SIGTERM, -signal.SIGTERM)):
            with self.subTest(signal=signum.name):
                log = self.directory / f"{signum.name}.log"
                process = self.serve(log)
                process.send_signal(signum)
                self.assertEqual(process.wait(timeout=60), status)
                process.communicate()
                text = log.read_text()
                self.assertIn("Main loop terminated", text)
                self.assertIn("Server Shut Down", text)

    def test_sigusr1_reopens_the_log_file(self) -> None:
        log = self.directory / "twistd.log"
        process = self.serve(log)
        log.rename(self.directory / "twistd.log.1")  # as logrotate does
        process.send_signal(signal.SIGUSR1)
        block_for_line(log, "log files reopened", process)
        process.terminate()
        process.communicate(timeout=60)
