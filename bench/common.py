"""What the server benchmarks share: a blocking JSON-RPC client, a real dpmd, baselines."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from dpmd.durable import fsync_directory

REPO = Path(__file__).resolve().parent.parent


class Rpc:
    """A blocking JSON-RPC client on one TCP connection; notifications are kept aside."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.next_id = 0
        self.notifications: deque[dict[str, Any]] = deque()
        self.responses: dict[int, dict[str, Any]] = {}
        self.arrival: list[int] = []  # response ids in the order they arrived

    def send(self, method: str, *params: Any) -> int:
        self.next_id += 1
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": list(params)}
        self.socket.sendall(json.dumps(request).encode() + b"\n")
        return self.next_id

    def read(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message, or None if none came within ``timeout`` seconds."""
        while b"\n" not in self.buffer:
            self.socket.settimeout(timeout)
            try:
                data = self.socket.recv(1 << 16)
            except TimeoutError:
                return None
            if not data:
                raise ConnectionError("dpmd closed the connection")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def reply(self, request_id: int) -> Any:
        """The result of one request; responses to others that come first are kept."""
        while request_id not in self.responses:
            message = self.read()
            assert message is not None
            if "id" in message:
                self.responses[message["id"]] = message
                self.arrival.append(message["id"])
            else:
                self.notifications.append(message["params"])
        message = self.responses.pop(request_id)
        if "error" in message:
            raise RuntimeError(f"{message['error']}")
        return message["result"]

    def call(self, method: str, *params: Any) -> Any:
        return self.reply(self.send(method, *params))

    def close(self) -> None:
        self.socket.close()


def start_server(directory: Path, config: Path,
                 log_name: str = "twistd.log") -> tuple[subprocess.Popen[bytes], int]:
    """``twistd -n dpmd`` in ``directory``; the port is read from the log."""
    log = directory / log_name
    log.unlink(missing_ok=True)
    twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    process = subprocess.Popen(
        [*twistd, "--nodaemon", "--pidfile=", f"--logfile={log}", "dpmd", "--config", str(config)],
        cwd=directory,
        env=dict(os.environ, PYTHONPATH=str(REPO), DATAROOT=str(directory)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        for line in (log.read_text() if log.exists() else "").splitlines():
            if "dpmd serving workspace" in line:
                return process, int(line.rsplit(":", 1)[1])
        time.sleep(0.01)
    process.kill()
    raise SystemExit(f"dpmd did not start: {process.communicate()[1].decode()}")


def durable_rename(directory: Path, name: str, data: bytes) -> None:
    """write + fsync + rename + fsync-dir: the least a durable acknowledgement costs."""
    temporary = directory / f".{name}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, directory / name)
    fsync_directory(directory)


def small_spec(daq_id: str) -> bytes:
    """A specification that is valid but cannot be collected: the DAQs stay queued."""
    return json.dumps({
        "id": daq_id,
        "sources": [
            {"type": "fitsKeywords", "sourceName": "ocm",
             "keywords": [{"type": "valueKeyword", "name": "OBJECT", "value": "BENCH"}]},
            {"type": "fitsFile", "sourceName": "dcs", "location": "/nonexistent/dcs.fits"},
        ],
        "target": {"fileId": daq_id},
    }).encode()  # fmt: skip


