"""A DAQ manager on a fake reactor, a real workspace and fake child processes.

Stages run for real (file checks, links, the workspace writes) but
synchronously, and every child the manager starts is a ``FakeProcess`` the
test drives: it decides what the merger prints and how it ends.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from dpmd.config import build_config
from dpmd.daq.admission.validator import MODULE as VETTING
from dpmd.daq.admission.vetting import READY, Rules, serve
from dpmd.daq.manager import DaqManager
from dpmd.daq.persist.committer import STATUS_TOPIC
from dpmd.digest import file_digest
from dpmd.encoding import PreEncoded
from dpmd.model import DaqError, DaqReply, DaqStatus
from dpmd.rpc.dispatch import Dispatcher
from dpmd.storage import StorageMonitor
from dpmd.testing import (
    FakeProcess,
    FakeProcessReactor,
    GroupSignals,
    connect_session,
    synchronous,
    written_messages,
)
from dpmd.topics import TopicHub
from dpmd.workers import ProcessRunner
from dpmd.workspace import Workspace

SETTLE_TURNS = 10_000
"""Turns after which ``Harness.settle`` gives up: far more than any test needs."""

FITS_BLOCK = b"SIMPLE  =                    T" + b" " * 2850


def make_fits(path: Path) -> Path:
    """A file that passes collection's check (the merger is faked in these tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(FITS_BLOCK)
    return path


def specification(daq_id: str, *locations: str, **extra: Any) -> dict[str, Any]:
    sources: list[dict[str, Any]] = [
        {"type": "fitsKeywords", "sourceName": "ocm",
         "keywords": [{"type": "valueKeyword", "name": "OBJECT", "value": "SKY"}]},
    ]  # fmt: skip
    sources += [
        {"type": "fitsFile", "sourceName": f"src{number}", "location": location}
        for number, location in enumerate(locations)
    ]
    spec: dict[str, Any] = {"id": daq_id, "sources": sources, "target": {"fileId": daq_id}}
    spec.update(extra)
    return spec


class Harness:
    def __init__(self, test: SynchronousTestCase, root: Path | None = None, **config: Any) -> None:
        self.test = test
        if root is None:
            root = Path(test.mktemp()).absolute()
            root.mkdir()
        self.root = root
        self.config = build_config(
            {"dataroot": str(root), "shutdown_timeout": 5, **config}, environ={}
        )
        self.reactor = FakeProcessReactor()
        # Far in the future: every source file was written "before the DAQ was queued".
        self.reactor.advance(4_000_000_000)
        self.hub = TopicHub()
        self.run_writer: Any = synchronous
        """How the store's writer runs a commit: a test may hold or fail commits."""
        self.run_blocking: Any = synchronous
        """How blocking work runs (validation, file checks): a test may hold it."""
        self.vetting_ready: set[int] = set()
        """The vetting children (``id``) that have said they are ready."""
        self.remote_size = 2 << 20
        """What a remote source's size probe (``ssh host wc -c``) answers."""
        self.free_bytes = 1 << 40
        """What the workspace's (pretended) file system has free: a test may fill it."""
        self.workspace = Workspace(self.config.workspace)
        self.config.workspace.mkdir(parents=True, exist_ok=True)
        self.manager = DaqManager(
            self.config,
            self.workspace,
            self.hub,
            self.reactor,
            ProcessRunner(self.reactor, GroupSignals(self.reactor)),
            lambda function, *args: self.run_writer(function, *args),
            synchronous,
            lambda function, *args: self.run_blocking(function, *args),
            StorageMonitor(str(self.config.workspace), self.reactor, self.hub, synchronous,
                           self.statvfs, max_age=0, reserve=self.config.storage_reserve),
        )  # fmt: skip
        self.session, self.transport = connect_session(Dispatcher({}), self.hub)
        self.hub.subscribe(STATUS_TOPIC, self.session)
        self.manager.start()
        test.addCleanup(self.close)
        self.settle()

    def close(self) -> Deferred[None]:
        """Close the store (through a writer the test may have left holding commits)."""
        self.run_writer = synchronous
        return self.manager.close()

    def settle(self) -> None:
        """Run the server until nothing is left to do now (stages start on later turns).

        Each turn runs the calls due on the fake clock and answers the children the
        harness plays: the checksum children a release starts (``dpmd.digest``) as the
        real program would, by reading the file; the vetting child
        (``dpmd.daq.admission.vetting``, which QueueDaqs go to while a commit is in
        flight) by saying it is ready, as its first line, and by running its own loop
        over what it was sent; a remote source's size probe with ``remote_size``.  It
        ends on the first turn after which no call is due and no such child waits; a
        server that never gets there fails the test, naming what was still due.
        """
        for _ in range(SETTLE_TURNS):
            self.reactor.advance(0)
            answered = self.answer_children()
            if not answered and not self.due_calls():
                return
        raise AssertionError(
            f"the server did not settle in {SETTLE_TURNS} turns; still due: {self.still_due()}"
        )

    def due_calls(self) -> list[Any]:
        """The fake clock's calls due now (or overdue)."""
        now = self.reactor.seconds()
        return [call for call in self.reactor.getDelayedCalls() if call.getTime() <= now]

    def waiting_children(self) -> list[FakeProcess]:
        """The children ``settle`` answers that have something to answer."""
        return [
            process
            for process in self.reactor.running_processes()
            if "dpmd.digest" in process.argv
            or (VETTING in process.argv
                and (process.stdin or id(process) not in self.vetting_ready))
            or process.argv[-1].startswith("wc -c < ")
        ]

    def answer_children(self) -> int:
        """Answer each child in ``waiting_children`` once; how many there were."""
        waiting = self.waiting_children()
        for process in waiting:
            if "dpmd.digest" in process.argv:
                self.answer_digest(process)
            elif VETTING in process.argv:
                self.answer_vetting(process)
            else:
                process.protocol.childDataReceived(1, b"%d\n" % self.remote_size)
                process.exit(0)
        return len(waiting)

    def still_due(self) -> str:
        calls = [str(call) for call in self.due_calls()]
        children = [" ".join(process.argv) for process in self.waiting_children()]
        return "; ".join(calls + children) or "nothing (it was busy until the last turn)"

    def statvfs(self, path: str) -> os.statvfs_result:
        """A 2 TiB file system with ``free_bytes`` free, in 4 KiB blocks."""
        free = self.free_bytes // 4096
        return os.statvfs_result((4096, 4096, (2 << 40) // 4096, free, free, 1000, 500, 500,
                                  0, 255))  # fmt: skip

    def answer_vetting(self, process: FakeProcess) -> None:
        """Run the vetting child's own loop over what the server wrote to its stdin."""
        requests, answers = io.BytesIO(bytes(process.stdin)), io.BytesIO()
        process.stdin.clear()
        if id(process) not in self.vetting_ready:  # its first line, as the real one's
            self.vetting_ready.add(id(process))
            process.protocol.childDataReceived(1, READY + b"\n")
        serve(requests, answers, Rules.from_json(process.argv[-1]))
        if answers.getvalue():
            process.protocol.childDataReceived(1, answers.getvalue())

    def answer_digest(self, process: FakeProcess) -> None:
        path = process.argv[-1]
        try:
            answer = {"path": path, **file_digest(path).to_json()}
        except OSError as error:
            answer = {"path": path, "error": error.strerror}
        process.write_json(answer)
        process.exit(0 if "error" not in answer else 1)

    def source(self, name: str) -> str:
        return str(make_fits(self.root / "data" / name))

    def queue(self, spec: dict[str, Any] | str) -> DaqReply:
        reply = self.test.successResultOf(self.manager.queue_daq(spec))
        self.settle()
        return reply

    def refused(self, deferred: Any) -> str:
        return self.test.failureResultOf(deferred, DaqError).value.message

    def stored(self, daq_id: str) -> dict[str, Any]:
        """The DAQ's row in the store, read with a connection of the test's own."""
        with closing(sqlite3.connect(self.workspace.root / "dpmd.sqlite3")) as db:
            row = db.execute(
                "SELECT seq, specification, record, substate, archived FROM daq WHERE id = ?",
                (daq_id,),
            ).fetchone()
        self.test.assertIsNotNone(row, f"{daq_id} is not in the store")
        seq, text, record, substate, archived = row
        try:
            decoded = json.loads(record)
        except ValueError:
            decoded = None  # a test made it unreadable
        return {"seq": seq, "specification": bytes(text), "record": decoded,
                "substate": substate, "archived": bool(archived)}  # fmt: skip

    def status(self, daq_id: str) -> DaqStatus:
        return DaqStatus.from_json(self.answer(self.manager.get_daq_status(daq_id)))

    def internal(self, daq_id: str) -> dict[str, Any]:
        return self.answer(self.manager.get_internal_daq_status(daq_id))

    def answer(self, result: Any) -> Any:
        """A query's value: at once for a DAQ in memory, from the store otherwise."""
        if isinstance(result, Deferred):
            result = self.test.successResultOf(result)
        if isinstance(result, PreEncoded):
            return json.loads(result.json)
        return result

    def active(self) -> list[dict[str, Any]]:
        return self.answer(self.manager.get_active_daqs())

    def notifications(self) -> list[dict[str, Any]]:
        return [message["params"] for message in written_messages(self.transport)]

    def substates(self) -> list[str]:
        return [status["substate"] for status in self.notifications()]

    def merger(self) -> FakeProcess:
        running = [p for p in self.reactor.running_processes() if "dpmd.merge" in p.argv]
        self.test.assertEqual(len(running), 1, "expected exactly one running merger")
        return running[0]

    def finish_merge(self, process: FakeProcess | None = None, **output: Any) -> Path:
        """Play a successful merger: write the product it names, report it, exit 0."""
        process = process or self.merger()
        product = Path(process.argv[process.argv.index("-o") + 1])
        product.write_bytes(FITS_BLOCK)
        provenance = Path(process.argv[process.argv.index("--provenance") + 1])
        card = FITS_BLOCK[:80].decode()
        provenance.write_text(json.dumps({"cards": [
            {"keyword": "SIMPLE", "card": card, "source": "(dpmd-merge)", "overrode": [],
             "rule": None}], "dropped": [], "sources": {}}))  # fmt: skip
        for alert in output.get("alerts", ()):
            process.write_json({"type": "alert", **alert})
        process.write_json({"type": "progress", "stage": "copying", "done": 10, "total": 10,
                            "unit": "bytes"})  # fmt: skip
        result = {"type": "result", "path": str(product), "size": len(FITS_BLOCK)}
        if "peak_rss_bytes" in output:
            result["peak_rss_bytes"] = output["peak_rss_bytes"]
        process.write_json(result)
        process.exit(0)
        self.settle()
        return product

    def fail_merge(self, code: int = 4, message: bytes = b"source missing") -> None:
        process = self.merger()
        stderr = Path(self.workspace.daq_dir(self._daq_of(process))) / "logs" / "merge.log"
        stderr.write_bytes(message + b"\n")
        process.exit(code)
        self.settle()

    def _daq_of(self, process: FakeProcess) -> str:
        spec_path = Path(process.argv[-1])
        return json.loads(spec_path.read_bytes())["id"]

    def terminate_signals(self, process: FakeProcess) -> list[int]:
        return [s for s in process.signals if s in (signal.SIGTERM, signal.SIGKILL)]
