"""Benchmark: dpmd's status calls against the JSON floor.

    python bench/rpc.py [--requests 100000] [--connections 50] [--rounds 3] [--dir DIR] [--keep]

Starts four servers in child processes, each on its own port of 127.0.0.1:

* ``floor``: a Twisted ``LineOnlyReceiver`` that only ``json.loads`` each line
  and writes a canned reply (the very bytes dpmd answers that method with);
* ``dpmd``: the real server (``twistd --nodaemon dpmd``) in a new temporary
  directory, with one DAQ queued whose source does not exist, so that it
  stays active;
* ``wire``: dpmd's framing and dispatcher (``JsonRpcFactory``, ``Dispatcher``)
  with handlers that return dpmd's results as plain values, encoded per call;
* ``encoded``: the same with the results returned as ``PreEncoded`` JSON text
  (as ``StorageMonitor.encoded()`` does), so nothing is encoded per call.

Then, for ``/daq/GetDaqStatus`` (of that DAQ) and ``/dpm/QueryStorageStatus``,
``--requests`` requests are sent pipelined (all written as fast as the server
reads them, the replies counted as they come) over one connection, then
spread over ``--connections`` connections, to each server in turn; the best
of ``--rounds`` is kept.  Printed: requests per second of each, and each
one's ratio to the floor.  Not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
METHODS = ("/daq/GetDaqStatus", "/dpm/QueryStorageStatus")
DAQ_ID = "BENCH.2026-01-01T00:00:00.000"


def floor_server(port_file: str, canned_file: str) -> None:
    """The floor: decode each line as JSON, answer with the canned reply of its method."""
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import LineOnlyReceiver

    replies = json.loads(Path(canned_file).read_text())
    canned = {method: line.encode() for method, line in replies.items()}

    class Floor(LineOnlyReceiver):
        delimiter = b"\n"
        MAX_LENGTH = 16 * 1024 * 1024

        def lineReceived(self, line: bytes) -> None:
            message = json.loads(line)
            self.transport.write(canned[message["method"]] + b"\n")

    port = reactor.listenTCP(0, Factory.forProtocol(Floor), interface="127.0.0.1")
    Path(port_file).write_text(str(port.getHost().port))
    reactor.run()


def wire_server(port_file: str, canned_file: str, encoded: bool) -> None:
    """dpmd's own framing and dispatcher, with handlers that return the canned results as
    plain values (what the DAQ manager's queries return when it answers from memory), as
    objects to encode or, with ``encoded``, as ``PreEncoded`` JSON text."""
    from twisted.internet import reactor

    from dpmd.api import translate_error
    from dpmd.encoding import PreEncoded
    from dpmd.rpc.dispatch import Dispatcher
    from dpmd.rpc.listener import JsonRpcFactory
    from dpmd.rpc.methods import Method, Param, string_param
    from dpmd.topics import TopicHub

    canned = json.loads(Path(canned_file).read_text())
    results = {method: json.loads(line)["result"] for method, line in canned.items()}
    if encoded:
        results = {method: PreEncoded.of(result) for method, result in results.items()}
    table = [
        Method("/daq/GetDaqStatus", lambda id: results["/daq/GetDaqStatus"],
               (Param("id", string_param),)),
        Method("/dpm/QueryStorageStatus", lambda: results["/dpm/QueryStorageStatus"]),
    ]  # fmt: skip
    dispatcher = Dispatcher({method.name: method for method in table}, translate_error)
    factory = JsonRpcFactory(dispatcher, TopicHub(), 16 * 1024 * 1024)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    Path(port_file).write_text(str(port.getHost().port))
    reactor.run()


def request_line(method: str) -> bytes:
    params = [DAQ_ID] if method == "/daq/GetDaqStatus" else []
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return json.dumps(message).encode() + b"\n"


def call(port: int, method: str, *params: Any) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        connection.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = connection.recv(1 << 16)
            if not chunk:
                raise RuntimeError(f"{method}: connection closed")
            data += chunk
    return json.loads(data.splitlines()[0])


def pipelined(port: int, line: bytes, requests: int, connections: int) -> float:
    """Send ``requests`` copies of ``line`` over ``connections`` sockets; requests per second."""
    share = [requests // connections + (n < requests % connections) for n in range(connections)]
    selector = selectors.DefaultSelector()
    states = []
    for count in share:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        state = {"socket": sock, "out": memoryview(line * count), "sent": 0, "expected": count,
                 "got": 0}  # fmt: skip
        states.append(state)
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, state)
    remaining = len(states)
    started = time.perf_counter()
    while remaining:
        for key, events in selector.select():
            state = key.data
            sock = state["socket"]
            if events & selectors.EVENT_WRITE:
                start = state["sent"]
                with contextlib.suppress(BlockingIOError):
                    state["sent"] += sock.send(state["out"][start : start + (1 << 20)])
                if state["sent"] == len(state["out"]):
                    selector.modify(sock, selectors.EVENT_READ, state)
            if events & selectors.EVENT_READ:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not data:
                    raise RuntimeError("the server closed a connection")
                state["got"] += data.count(b"\n")
                if state["got"] >= state["expected"]:
                    selector.unregister(sock)
                    remaining -= 1
    elapsed = time.perf_counter() - started
    for state in states:
        state["socket"].close()
    return requests / elapsed


def wait_for_port(path: Path, process: subprocess.Popen[bytes], what: str) -> int:
    deadline = time.monotonic() + 60
    while not (path.exists() and path.read_text().strip()):
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)
    return int(path.read_text())


def start_dpmd(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_probe = socket.socket()
    port_probe.bind(("127.0.0.1", 0))
    port = port_probe.getsockname()[1]
    port_probe.close()
    config = directory / "dpmd.yaml"
    config.write_text(
        f"dataroot: {directory}\nlisten: ['tcp:{port}:interface=127.0.0.1']\nlog_level: warn\n"
    )
    twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    process = subprocess.Popen(
        [*twistd, "--nodaemon", "--pidfile=", f"--logfile={directory / 'dpmd.log'}",
         "dpmd", "--config", str(config)],
        cwd=REPO,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            call(port, "/dpm/QueryStorageStatus")
            return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dpmd did not start; see dpmd.log") from None
            time.sleep(0.1)


def queue_blocked_daq(port: int, directory: Path) -> None:
    specification = {
        "id": DAQ_ID,
        "sources": [{"type": "fitsFile", "sourceName": "missing",
                     "location": str(directory / "no-such-file.fits")}],
        "target": {"fileId": "BENCH"},
    }  # fmt: skip
    reply = call(port, "/daq/QueueDaq", json.dumps(specification))
    if "error" in reply:
        raise RuntimeError(f"QueueDaq failed: {reply['error']['message']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", help="where to make the temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "PORT_FILE", "CANNED"),
                        help=argparse.SUPPRESS)  # fmt: skip
    arguments = parser.parse_args()
    if arguments.serve:
        kind, *files = arguments.serve
        if kind == "floor":
            floor_server(*files)
        else:
            wire_server(*files, encoded=kind == "encoded")
        return
    directory = Path(tempfile.mkdtemp(prefix="dpmd-bench-rpc-", dir=arguments.dir))
    children: list[subprocess.Popen[bytes]] = []
    try:
        dpmd, dpmd_port = start_dpmd(directory)
        children.append(dpmd)
        queue_blocked_daq(dpmd_port, directory)
        canned = {}
        for method in METHODS:
            line = request_line(method)
            with socket.create_connection(("127.0.0.1", dpmd_port)) as connection:
                connection.sendall(line)
                reply = b""
                while not reply.endswith(b"\n"):
                    reply += connection.recv(1 << 16)
            canned[method] = reply.rstrip(b"\n").decode()
        (directory / "canned.json").write_text(json.dumps(canned))
        ports = {"dpmd": dpmd_port}
        for kind in ("floor", "wire", "encoded"):
            port_file = directory / f"{kind}.port"
            child = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port_file),
                                      str(directory / "canned.json")], cwd=REPO)  # fmt: skip
            children.append(child)
            ports[kind] = wait_for_port(port_file, child, f"the {kind} server")
        print(f"{arguments.requests} pipelined requests, best of {arguments.rounds}; "
              f"replies of {', '.join(f'{m} {len(canned[m])} B' for m in METHODS)}")  # fmt: skip
        names = ("floor", "dpmd", "wire", "encoded")
        print(f"{'method':24} {'conns':>5}" + "".join(f" {name + '/s':>9}" for name in names)
              + "   ratios to the floor")  # fmt: skip
        for method in METHODS:
            line = request_line(method)
            for connections in (1, arguments.connections):
                best = {}
                for name in names:
                    best[name] = max(
                        pipelined(ports[name], line, arguments.requests, connections)
                        for _ in range(arguments.rounds)
                    )
                rates = "".join(f" {best[name]:>9.0f}" for name in names)
                ratios = "  ".join(f"{name} {best[name] / best['floor']:.2f}" for name in names[1:])
                print(f"{method:24} {connections:>5}{rates}   {ratios}")
    finally:
        for child in children:
            child.terminate()
            child.wait(timeout=30)
        if arguments.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
