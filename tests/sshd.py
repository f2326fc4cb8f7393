"""A real OpenSSH server on 127.0.0.1 for the remote-transfer tests.

Keys, ``sshd_config``, ``known_hosts`` and a client ``ssh_config`` are made in
a temporary folder; the host alias ``dpmd-test-host`` reaches the server, so
``dpmd-test-host:/abs/path`` is a remote location that really goes through
ssh and rsync.  When ``sshd``, ``ssh``, ``ssh-keygen`` or ``rsync`` are
missing (CI installs them), the tests using it are skipped with a message
naming the missing program.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

HOST_ALIAS = "dpmd-test-host"
SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/usr/bin/sshd")


def _program(name: str, candidates: tuple[str, ...] = ()) -> str:
    found = shutil.which(name) or next((c for c in candidates if os.access(c, os.X_OK)), None)
    if found is None:
        raise SkipTest(f"{name} is not installed (apt-get install openssh-server rsync)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SshServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.sshd = _program("sshd", SSHD_CANDIDATES)
        self.keygen = _program("ssh-keygen")
        self.ssh = _program("ssh")
        _program("rsync")
        self.process: subprocess.Popen[bytes] | None = None
        self.ssh_config = directory / "ssh_config"

    @property
    def ssh_options(self) -> list[str]:
        return ["-F", str(self.ssh_config)]

    def _key(self, name: str) -> Path:
        path = self.directory / name
        subprocess.run(
            [self.keygen, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True
        )
        return path

    def start(self) -> SshServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        host_key, client_key = self._key("host_key"), self._key("client_key")
        authorized = self.directory / "authorized_keys"
        shutil.copy(client_key.with_suffix(".pub"), authorized)
        authorized.chmod(0o600)
        port = free_port()
        config = self.directory / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PidFile {self.directory / 'sshd.pid'}\nAuthorizedKeysFile {authorized}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\nLogLevel ERROR\n"
        )
        known_hosts = self.directory / "known_hosts"
        known_hosts.write_text(f"{HOST_ALIAS} {host_key.with_suffix('.pub').read_text()}")
        self.ssh_config.write_text(
            f"Host {HOST_ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n"
            f"  User {getpass.getuser()}\n  IdentityFile {client_key}\n  IdentitiesOnly yes\n"
            f"  HostKeyAlias {HOST_ALIAS}\n  UserKnownHostsFile {known_hosts}\n"
            "  StrictHostKeyChecking yes\n  BatchMode yes\n  LogLevel ERROR\n"
        )
        self.process = subprocess.Popen(
            [self.sshd, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"sshd did not start: {self.process.stderr.read().decode()}")
            probe = subprocess.run(
                [self.ssh, *self.ssh_options, HOST_ALIAS, "true"], capture_output=True
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"ssh to the test sshd keeps failing: {probe.stderr.decode()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class SshServerCase(TestCase):
    """A test with a real sshd, a folder ``far`` that stands for another host's disk,
    and ``start()``: an in-process dpmd whose transfers go through that sshd."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()
        self.sshd = SshServer(self.root / "ssh").start()
        self.addCleanup(self.sshd.stop)
        self.far = self.root / "far"  # "another host": reached only through ssh
        self.far.mkdir()

    @inlineCallbacks
    def start(self, **values: Any) -> Any:
        """Start the server (``values`` override the configuration); its caller."""
        from tests.rpcclient import start_server

        options = {"transfer.ssh_options": self.sshd.ssh_options, "transfer.retries": 0}
        self.service, caller = yield start_server(self, self.root, **options, **values)
        return caller
