"""``dpmd.sdnotify`` against real datagram sockets, and the systemd unit."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase, TestCase

import dpmd
from dpmd.sdnotify import SystemdNotifier, socket_address
from tests.test_client_support import short_directory
from tests.test_twistd import TWISTD
from tests.waiting import block_for_file

SOURCE_ROOT = Path(dpmd.__file__).parent.parent
UNIT = SOURCE_ROOT / "etc" / "dpmd.service"


class Listener:
    """The supervisor's end: a bound ``AF_UNIX`` datagram socket."""

    def __init__(self, test: SynchronousTestCase, abstract: bool = False) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        test.addCleanup(self.socket.close)
        if abstract:
            name = f"dpmd-test-{uuid.uuid4().hex}"
            self.socket.bind("\0" + name)
            self.environ = {"NOTIFY_SOCKET": "@" + name}
        else:
            path = short_directory(test) / "notify.sock"
            self.socket.bind(str(path))
            self.environ = {"NOTIFY_SOCKET": str(path)}
        self.socket.settimeout(10)

    def receive(self) -> str:
        return self.socket.recv(4096).decode()


class NotifierTests(SynchronousTestCase):
    def test_ready_stopping_and_status_reach_a_path_socket(self) -> None:
        listener = Listener(self)
        notifier = SystemdNotifier(listener.environ)
        self.assertTrue(notifier.enabled)
        self.assertTrue(notifier.ready("serving tcp:12083"))
        self.assertEqual(listener.receive(), "READY=1\nSTATUS=serving tcp:12083")
        self.assertTrue(notifier.status("2 DAQs\nactive"))
        self.assertEqual(listener.receive(), "STATUS=2 DAQs active")  # one line per field
        self.assertTrue(notifier.stopping())
        self.assertEqual(listener.receive(), "STOPPING=1")

    def test_abstract_socket(self) -> None:
        listener = Listener(self, abstract=True)
        self.assertTrue(SystemdNotifier(listener.environ).ready())
        self.assertEqual(listener.receive(), "READY=1")

    def test_without_notify_socket_nothing_is_sent(self) -> None:
        notifier = SystemdNotifier({})
        self.assertFalse(notifier.enabled)
        self.assertFalse(notifier.ready())
        self.assertFalse(notifier.stopping())

    def test_addresses(self) -> None:
        self.assertEqual(socket_address("@abc"), "\0abc")
        self.assertEqual(socket_address("/run/systemd/notify"), "/run/systemd/notify")
        for unusable in ("@", "relative/path", "vsock:2:1234"):
            self.assertIsNone(socket_address(unusable))
        self.assertFalse(SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled)

    def test_nobody_listening_is_not_an_error(self) -> None:
        gone = short_directory(self) / "gone.sock"
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(gone)})
        self.assertFalse(notifier.ready())  # logged, not raised


class ServerNotifiesTests(TestCase):

    def test_twistd_sends_ready_once_it_serves_and_stopping_on_exit(self) -> None:
        listener = Listener(self)
        root = Path(self.mktemp()).absolute()
        root.mkdir()
        sock = short_directory(self) / "dpmd.sock"
        server = subprocess.Popen(
            [*TWISTD, "--nodaemon", "--pidfile=", "dpmd", "--listen", f"unix:{sock}"],
            cwd=root,
            env=dict(os.environ, PYTHONPATH=str(SOURCE_ROOT), DATAROOT=str(root),
                     **listener.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self.addCleanup(server.communicate)
        self.addCleanup(lambda: server.poll() is None and server.kill())
        block_for_file(sock, server)
        listener.socket.settimeout(3)  # READY=1 comes at once: its absence must cost little
        self.assertIn("READY=1", listener.receive().splitlines())
        with socket.socket(socket.AF_UNIX) as client:  # it serves: READY came first
            client.connect(str(sock))
            client.sendall(b'{"jsonrpc":"2.0","id":1,"method":"/dpm/Exit"}\n')
            client.recv(4096)
        self.assertIn("STOPPING=1", listener.receive().splitlines())
        self.assertEqual(server.wait(timeout=60), 0)


class UnitFileTests(SynchronousTestCase):
    def verify(self, unit: Path) -> subprocess.CompletedProcess[str]:
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise self.skipTest("systemd-analyze is not installed (apt-get install systemd)")
        return subprocess.run(
            [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
        )

    def test_systemd_analyze_verify_accepts_the_unit(self) -> None:
        """``systemd-analyze verify`` checks that ``ExecStart``'s program exists, so the
        copy verified here names this environment's ``twistd`` instead of ``/opt/dpmd``'s;
        nothing else is changed."""
        twistd = Path(sys.executable).parent / "twistd"
        self.assertTrue(os.access(twistd, os.X_OK), f"{twistd} is not an executable")
        text = UNIT.read_text()
        self.assertIn("ExecStart=/opt/dpmd/bin/twistd ", text)
        copy = Path(self.mktemp())
        copy.mkdir()
        (copy / "dpmd.service").write_text(text.replace("/opt/dpmd/bin/twistd", str(twistd)))
        result = self.verify(copy / "dpmd.service")
        self.assertEqual((result.returncode, result.stderr), (0, ""))

    def test_before_dpmd_is_in_opt_the_one_complaint_is_its_twistd(self) -> None:
        """What README says ``systemd-analyze verify etc/dpmd.service`` prints on a machine
        where dpmd is not yet installed in /opt/dpmd."""
        if Path("/opt/dpmd/bin/twistd").exists():
            raise self.skipTest("dpmd is installed in /opt/dpmd here")
        result = self.verify(UNIT)
        self.assertNotEqual(result.returncode, 0)
        [complaint] = result.stderr.splitlines()
        self.assertIn("Command /opt/dpmd/bin/twistd is not executable", complaint)

    def test_the_unit_is_what_the_server_expects(self) -> None:
        lines = set(UNIT.read_text().splitlines())
        for setting in (
            "Type=notify",
            "NotifyAccess=main",
            "Restart=on-failure",
            "User=dpmd",
            "KillMode=mixed",
            "ExecStart=/opt/dpmd/bin/twistd --nodaemon --pidfile= dpmd"
            " --config /etc/dpmd/dpmd.yaml",
        ):
            self.assertIn(setting, lines)
        self.assertTrue([line for line in lines if line.startswith("ReadWritePaths=")])
