"""Crash torture: ``kill -9`` dpmd at random moments and in named windows, many times over.

A real ``twistd dpmd`` runs as a child process on a workspace that outlives it.
DAQs of astropy-made sources are queued (again and again, until each is
acknowledged), with four receivers each: a hard link on the workspace's file
system, a symbolic link and a copy on another file system (``/dev/shm``), and
one that an "archive" thread empties the moment a file arrives.  The server is
killed with SIGKILL at random moments, and at each named window (``POINTS``),
where a server started with ``serve --crash-at POINT`` kills itself; then it
is started again on the same workspace.  At the end a last server finishes
everything and the outcome is checked:

* every DAQ acknowledged is ``Completed``, its product at every receiver has
  valid checksums (astropy), and QueueDaqs sent again are answered as success;
* the emptied receiver got each product exactly once; no receiver holds a
  temporary file, the workspace holds no DAQ folder;
* no child process outlived the server that started it.

``python -m tests.torture serve --crash-at POINT -- TWISTD-ARGS`` is the
armed server; ``bench/crash_torture.py`` runs the whole program with more
kills and prints the counts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.waiting import block_until

SOURCE_ROOT = str(Path(__file__).resolve().parent.parent)

POINTS = ("queue-reply", "receiver-publish", "commit-batch", "archive")
"""Named windows: after a QueueDaq is durable but before its reply; after a product
appears at a receiver but before it is recorded; in the middle of a store transaction;
while a finished DAQ's folder is being archived."""
RECOLLECT_POINT = "recollect"
"""A window of its own, for ``tests.test_recollect_server`` (the torture's DAQs never fail
a merge): a retry's re-collection has hashed a source again, before it is recorded."""

TEMPORARY_MARKS = (".dpmd-part", ".dpmd-tmp", ".tmp")


# -- the armed server (runs in the child) -------------------------------------------------


def _die(marker: Path) -> None:
    marker.write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str, marker: Path) -> None:
    """Make the server kill itself, once, inside the named window."""
    if point == "queue-reply":
        from dpmd.daq.admission import intake
        from dpmd.daq.persist.store import INSERTED

        stored = intake.Intake._stored

        def reply_never_sent(self: Any, result: str, *args: Any) -> Any:
            if result == INSERTED:
                _die(marker)
            return stored(self, result, *args)

        intake.Intake._stored = reply_never_sent  # type: ignore[method-assign]
    elif point == "receiver-publish":
        from dpmd.stages import release_local

        publish = release_local.publish

        def published_not_recorded(staging: Path, final: Path) -> bool:
            done = publish(staging, final)
            _die(marker)
            return done

        release_local.publish = published_not_recorded
    elif point == "commit-batch":
        from dpmd.daq.persist.store import Store

        apply = Store._apply

        def half_a_transaction(self: Any, change: Any) -> Any:
            result = apply(self, change)
            if type(change).__name__ == "Update":
                _die(marker)  # one change executed, the transaction not committed
            return result

        Store._apply = half_a_transaction  # type: ignore[method-assign]
    elif point == RECOLLECT_POINT:
        from dpmd.stages import collect

        supersede = collect.superseding

        def hashed_not_recorded(earlier: Any, record: Any) -> Any:
            _die(marker)
            return supersede(earlier, record)

        collect.superseding = hashed_not_recorded
    elif point == "archive":
        from dpmd.workspace import Workspace

        file_away = Workspace.file_away

        def half_filed(self: Any, daq_id: str, product: str) -> None:
            if product:
                Path(product).unlink(missing_ok=True)
            shutil.rmtree(self.daq_dir(daq_id) / "sources", ignore_errors=True)
            _die(marker)
            file_away(self, daq_id, product)

        Workspace.file_away = half_filed  # type: ignore[method-assign]
    else:
        known = ", ".join((*POINTS, RECOLLECT_POINT))
        raise SystemExit(f"unknown crash point {point!r}; known: {known}")


def serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="tests.torture serve")
    parser.add_argument("--crash-at", default="")
    parser.add_argument("--marker", default="")
    parser.add_argument("twistd", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    if options.crash_at:
        arm(options.crash_at, Path(options.marker))
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *[a for a in options.twistd if a != "--"]]
    run()


# -- the driver ------------------------------------------------------------------------------


@dataclass
class Report:
    kills: int = 0
    windows: Counter[str] = field(default_factory=Counter)
    daqs: int = 0
    completed: int = 0
    lost: list[str] = field(default_factory=list)
    double: dict[str, int] = field(default_factory=dict)
    missing_at_receivers: list[str] = field(default_factory=list)
    bad_checksums: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    resent_refused: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.double or self.missing_at_receivers or self.bad_checksums
                    or self.leftovers or self.orphans or self.resent_refused)  # fmt: skip

    def summary(self) -> str:
        windows = ", ".join(f"{point} {self.windows[point]}" for point in POINTS)
        return (
            f"{self.kills} kills ({windows}); {self.daqs} DAQs, {self.completed} completed; "
            f"lost {len(self.lost)}, double deliveries {len(self.double)}, missing at "
            f"receivers {len(self.missing_at_receivers)}, bad checksums "
            f"{len(self.bad_checksums)}, left-over files {len(self.leftovers)}, orphans "
            f"{len(self.orphans)}, resent QueueDaq refused {len(self.resent_refused)}; "
            f"{self.seconds:.1f} s"
        )


class Emptier(threading.Thread):
    """An archive that takes every file the moment it appears, counting arrivals."""

    def __init__(self, inbox: Path, sink: Path) -> None:
        super().__init__(daemon=True)
        self.inbox, self.sink = inbox, sink
        self.arrivals: Counter[str] = Counter()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.sweep()
            time.sleep(0.002)
        self.sweep()

    def sweep(self) -> None:
        for name in os.listdir(self.inbox):
            if name.startswith("."):
                continue  # a staging name: not delivered yet
            self.arrivals[name] += 1
            os.rename(self.inbox / name, self.sink / f"{name}.{self.arrivals[name]}")


def rpc(port: int, requests: list[tuple[str, list[Any]]], timeout: float = 10) -> list[Any]:
    """Send requests on one connection; the answers (result or error), None if cut off."""
    answers: dict[int, Any] = {}
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
            for number, (method, params) in enumerate(requests):
                request = {"jsonrpc": "2.0", "id": number, "method": method, "params": params}
                client.sendall(json.dumps(request).encode() + b"\n")
            client.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := client.recv(1 << 16):
                data += chunk
    except OSError:
        data = b""
    for line in data.splitlines():
        message = json.loads(line)
        if "id" in message:
            answers[message["id"]] = message.get("result", message.get("error"))
    return [answers.get(number) for number in range(len(requests))]


class Torture:
    def __init__(self, root: Path, far: Path, daqs: int, seed: int) -> None:
        self.root, self.far = root, far
        self.random = random.Random(seed)
        self.ids = [f"TORTURE.{n}" for n in range(1, daqs + 1)]
        self.receivers = {
            "link": root / "rx-link",
            "symlink": far / "rx-symlink",
            "copy": far / "rx-copy",
            "emptied": root / "rx-emptied",
        }
        for folder in self.receivers.values():
            folder.mkdir(parents=True)
        (root / "archive-sink").mkdir()
        self.emptier = Emptier(self.receivers["emptied"], root / "archive-sink")
        self.config = root / "dpmd.yaml"
        self.config.write_text(
            "listen: ['tcp:0:interface=127.0.0.1']\nlimits: {daq: 2, merge: 2, transfer: 2}\n"
            f"shutdown_timeout: 5\nrelease: {{allowed: ['.', '{far}']}}\n"
        )
        self.specs = {daq_id: json.dumps(self.specification(daq_id)) for daq_id in self.ids}
        self.acknowledged: set[str] = set()
        self.held = {point: self.ids[-1 - number] for number, point in enumerate(POINTS)}
        """A DAQ kept back for each named window, queued in that life: there is work in it."""
        self.report = Report(daqs=daqs)
        self.children_seen: set[int] = set()

    def specification(self, daq_id: str) -> dict[str, Any]:
        from tests.fitsfactory import image_hdu, table_hdu, write_fits

        sources = self.root / "sources"
        if not sources.exists():
            sources.mkdir()
            write_fits(str(sources / "dcs.fits"), [("INSTRUME", "TORTURE")],
                       extensions=[image_hdu("CHIP1", (64, 64), seed=1)])  # fmt: skip
            write_fits(str(sources / "fcs.fits"), [("HIERARCH ESO INS FILT1 ID", "R")],
                       extensions=[table_hdu("FCS", 40)])  # fmt: skip
        receivers = [
            {"type": "olasReceiver", "path": str(self.receivers["link"])},
            {"type": "olasReceiver", "path": str(self.receivers["symlink"])},
            {"type": "olasReceiver", "path": str(self.receivers["copy"]),
             "options": {"allowSymlink": False}},
            {"type": "olasReceiver", "path": str(self.receivers["emptied"])},
        ]  # fmt: skip
        return {
            "id": daq_id,
            "sources": [
                {"type": "fitsKeywords", "sourceName": "ocm",
                 "keywords": [{"type": "valueKeyword", "name": "OBJECT", "value": daq_id}]},
                {"type": "fitsFile", "sourceName": "dcs", "location": str(sources / "dcs.fits")},
                {"type": "fitsFile", "sourceName": "fcs", "location": str(sources / "fcs.fits")},
            ],
            "target": {"fileId": daq_id},
            "receivers": receivers,
        }  # fmt: skip

    # -- one life of the server ---------------------------------------------------------------

    def start(self, crash_at: str = "") -> tuple[subprocess.Popen[bytes], int | None, Path]:
        """A new server on the workspace; its port, or None if it died while starting
        (an armed server may reach its window during recovery)."""
        log = self.root / f"twistd-{time.monotonic_ns()}.log"
        marker = self.root / f"hit-{time.monotonic_ns()}"
        armed = ["--crash-at", crash_at, "--marker", str(marker)] if crash_at else []
        argv = [sys.executable, "-m", "tests.torture", "serve", *armed, "--",
                "--nodaemon", "--pidfile=", f"--logfile={log}", "dpmd",
                "--config", str(self.config)]  # fmt: skip
        environ = dict(os.environ, PYTHONPATH=SOURCE_ROOT, DATAROOT=str(self.root))
        quiet = subprocess.DEVNULL
        process = subprocess.Popen(argv, cwd=self.root, env=environ, stdout=quiet, stderr=quiet)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            for line in text.splitlines():
                if "dpmd serving workspace" in line:
                    return process, int(line.rsplit(":", 1)[1]), marker
            if process.poll() is not None:
                if marker.exists():
                    return process, None, marker
                break
            time.sleep(0.01)
        raise RuntimeError(f"dpmd did not start: {log.read_text() if log.exists() else ''}")

    def queue_all(self, port: int) -> None:
        """QueueDaq every DAQ not yet acknowledged, and again two that were."""
        again = self.random.sample(sorted(self.acknowledged), min(2, len(self.acknowledged)))
        held = set(self.held.values())
        pending = [daq_id for daq_id in self.ids
                   if daq_id not in self.acknowledged and daq_id not in held]  # fmt: skip
        names = pending + again
        answers = rpc(port, [("/daq/QueueDaq", [self.specs[name]]) for name in names])
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, dict) and answer.get("id") == name:
                self.acknowledged.add(name)
            elif answer is not None and name in again:
                self.report.resent_refused.append(f"{name}: {answer}")

    def watch_children(self, server: subprocess.Popen[bytes]) -> None:
        try:
            for child in psutil.Process(server.pid).children(recursive=True):
                self.children_seen.add(child.pid)
        except psutil.Error:
            pass

    def kill(self, server: subprocess.Popen[bytes]) -> None:
        self.watch_children(server)
        if server.poll() is None:
            server.send_signal(signal.SIGKILL)
        server.wait()
        self.report.kills += 1
        self.wait_for_orphans()

    def wait_for_orphans(self) -> None:
        """Children of a killed server get SIGTERM from the kernel and end on their own."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = [pid for pid in self.children_seen if psutil.pid_exists(pid)
                     and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]  # fmt: skip
            if not alive:
                self.children_seen.clear()
                return
            time.sleep(0.02)
        for pid in alive:
            try:
                command = " ".join(psutil.Process(pid).cmdline())
            except psutil.Error:
                continue
            self.report.orphans.append(f"{pid}: {command}")
            os.kill(pid, signal.SIGKILL)
        self.children_seen.clear()

    def random_life(self) -> None:
        server, port, _ = self.start()
        assert port is not None
        self.queue_all(port)
        deadline = time.monotonic() + self.random.uniform(0.0, 0.6)
        while time.monotonic() < deadline and server.poll() is None:
            self.watch_children(server)
            time.sleep(0.01)
        self.kill(server)

    def armed_life(self, point: str) -> bool:
        """A life that ends inside ``point``'s window; False if the window never came."""
        server, port, marker = self.start(crash_at=point)
        self.held.pop(point, None)
        if port is not None:
            self.queue_all(port)
        deadline = time.monotonic() + 30
        while server.poll() is None and time.monotonic() < deadline:
            self.watch_children(server)
            time.sleep(0.005)
        self.kill(server)
        if marker.exists():
            self.report.windows[point] += 1
            return True
        return False

    # -- the whole run ---------------------------------------------------------------------------

    def run(self, kills: int, timeout: float) -> Report:
        started = time.monotonic()
        self.emptier.start()
        plan: list[str] = [""] * kills
        for point in POINTS:
            plan.insert(self.random.randrange(len(plan) + 1), point)
        for point in plan:
            if point:
                self.armed_life(point)
            else:
                self.random_life()
        self.finish(timeout)
        self.emptier.stopping.set()
        self.emptier.join()
        self.check()
        self.report.seconds = time.monotonic() - started
        return self.report

    def finish(self, timeout: float) -> None:
        self.held.clear()
        server, port, _ = self.start()
        assert port is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.queue_all(port)
            [active] = rpc(port, [("/daq/GetActiveDaqs", [])])
            if self.acknowledged == set(self.ids) and active == []:
                break
            time.sleep(0.1)
        statuses = rpc(port, [("/daq/GetDaqStatus", [daq_id]) for daq_id in self.ids])
        for daq_id, status in zip(self.ids, statuses, strict=True):
            if isinstance(status, dict) and status.get("substate") == "Completed":
                self.report.completed += 1
            else:
                self.report.lost.append(f"{daq_id}: {status}")
        again = rpc(port, [("/daq/QueueDaq", [self.specs[daq_id]]) for daq_id in self.ids])
        for daq_id, answer in zip(self.ids, again, strict=True):
            if answer != {"id": daq_id, "error": False}:
                self.report.resent_refused.append(f"{daq_id}: {answer}")
        daqs = self.root / "dpm" / "daqs"
        with contextlib.suppress(AssertionError):  # what stays there, ``check`` reports
            block_until(lambda: not os.listdir(daqs), "the last folders to be filed away", 10)
        self.watch_children(server)
        rpc(port, [("/dpm/Exit", [])])
        server.wait(timeout=60)
        self.wait_for_orphans()

    def check(self) -> None:
        from astropy.io import fits

        for daq_id in self.ids:
            name = f"{daq_id}.fits"
            for kind in ("link", "symlink", "copy"):
                path = self.receivers[kind] / name
                if not path.exists():
                    self.report.missing_at_receivers.append(f"{kind}: {name}")
                    continue
                with fits.open(path, checksum=True) as hdus:
                    if not all(hdu.verify_checksum() == 1 for hdu in hdus):
                        self.report.bad_checksums.append(f"{kind}: {name}")
            arrivals = self.emptier.arrivals[name]
            if arrivals != 1:
                self.report.double[name] = arrivals
                if arrivals == 0:
                    self.report.missing_at_receivers.append(f"emptied: {name}")
        for folder in self.receivers.values():
            for entry in os.listdir(folder):
                if entry.startswith(".") or entry.endswith(TEMPORARY_MARKS):
                    self.report.leftovers.append(str(folder / entry))
        workspace = self.root / "dpm"
        for entry in os.listdir(workspace / "daqs"):
            self.report.leftovers.append(str(workspace / "daqs" / entry))


def torture(kills: int = 30, daqs: int = 20, seed: int = 0, timeout: float = 120,
            root: Path | None = None) -> Report:  # fmt: skip
    """Run the whole program in a temporary directory (or ``root``)."""
    base = Path(tempfile.mkdtemp(prefix="dpmd-torture-")) if root is None else root
    far = Path(tempfile.mkdtemp(prefix="dpmd-torture-", dir="/dev/shm"))
    try:
        return Torture(base, far, daqs, seed).run(kills, timeout)
    finally:
        shutil.rmtree(far, ignore_errors=True)
        if root is None:
            shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["serve"]:
        serve(arguments[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.torture")
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--daqs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(arguments)
    report = torture(options.kills, options.daqs, options.seed)
    print(report.summary())
    for name in ("lost", "double", "missing_at_receivers", "bad_checksums", "leftovers",
                 "orphans", "resent_refused"):  # fmt: skip
        value = getattr(report, name)
        if value:
            print(f"{name}: {value}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
