"""A workspace on a small tmpfs that fills up: the store's commits fail, nothing that is
not on disk is published, and once space is freed a retry completes the DAQ."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from tests.rpcclient import RpcError, start_server
from tests.test_daq_integration import product_spec

MIB = 1 << 20


def mount_tmpfs(test: TestCase, size: str) -> Path:
    """A fresh tmpfs of ``size``; the test is skipped, saying why, where mounting fails."""
    point = Path(tempfile.mkdtemp(prefix="dpmd-full-"))
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        point.rmdir()
        reason = result.stderr.strip() or "mount failed"
        raise SkipTest(f"cannot mount a small tmpfs to fill up ({reason}; it needs root)")
    test.addCleanup(point.rmdir)
    test.addCleanup(subprocess.run, ["umount", "-l", str(point)], check=False)
    return point


def fill(folder: Path) -> Path:
    """Write until the file system is full."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 65536):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    return filler


class FullDiskTests(TestCase):
    @inlineCallbacks
    def test_commits_that_cannot_be_made_are_refused_then_retry_completes(self) -> Any:
        disk = mount_tmpfs(self, "8M")
        sources = Path(self.mktemp()).absolute()
        sources.mkdir()
        service, caller = yield start_server(self, disk)
        spec = product_spec("FULL.1", sources)
        spec["sources"][2]["location"] = str(sources / "fcs.fits")
        late = sources / "late.fits"
        spec["sources"].append({"type": "fitsFile", "sourceName": "late", "location": str(late)})
        yield caller.call("/daq/QueueDaq", json.dumps(spec))
        for _ in range(500):
            status = yield caller.call("/daq/GetDaqStatus", "FULL.1")
            if status["error"]:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual([(a["category"], a["key"]) for a in status["alerts"]],
                         [("SourceFileCollectionError", "late")])  # fmt: skip
        filler = fill(disk)

        # New DAQs are refused once the store cannot grow (the first may still fit).
        refusal = None
        for number in range(50):
            big = product_spec(f"FULL.BIG.{number}", sources)
            big["sources"][0]["keywords"] += [
                {"type": "valueKeyword", "name": f"BIG{n:04d}", "value": "x" * 40}
                for n in range(2000)
            ]
            try:
                yield caller.call("/daq/QueueDaq", json.dumps(big))
            except RpcError as error:
                refusal = error
                break
        self.assertIsNotNone(refusal, "the store never refused a commit on a full disk")
        assert refusal is not None
        self.assertEqual(refusal.code, -32000)
        self.assertIn("database or disk is full", str(refusal))
        refused_id = f"FULL.BIG.{number}"
        self.assertEqual(caller.statuses(refused_id), [], "nothing published of it")

        # A change of the blocked DAQ cannot be committed either: refused, and shown.
        late.write_bytes((sources / "fcs.fits").read_bytes())
        caller.notifications.clear()
        with self.assertRaises(RpcError) as retry:
            yield caller.call("/daq/RetryMergeDaq", "FULL.1")
        self.assertIn("could not record", str(retry.exception))
        shown = caller.statuses("FULL.1")[-1]
        self.assertTrue(shown["error"])
        self.assertIn("WorkspaceError", [a["category"] for a in shown["alerts"]])
        with closing(sqlite3.connect(disk / "dpm" / "dpmd.sqlite3")) as db:
            (record,) = db.execute("SELECT record FROM daq WHERE id = 'FULL.1'").fetchone()
        stored_alerts = [a["category"] for a in json.loads(record)["alerts"]]
        self.assertEqual(stored_alerts, ["SourceFileCollectionError"], "the store is unchanged")

        os.unlink(filler)
        yield caller.call("/daq/RetryMergeDaq", "FULL.1")
        final = yield caller.wait_for("FULL.1", "Completed")
        self.assertFalse(final["error"])
        self.assertTrue(Path(final["result"]).exists())
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        del service

    @inlineCallbacks
    def test_below_the_reserve_a_daq_waits_then_completes_when_space_returns(self) -> Any:
        disk = mount_tmpfs(self, "8M")
        sources = Path(self.mktemp()).absolute()
        sources.mkdir()
        service, caller = yield start_server(self, disk, **{"storage.reserve": "50%"})
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (5 * MIB))
        spec = product_spec("LOW.1", sources)
        spec["sources"][2]["location"] = str(sources / "fcs.fits")
        yield caller.call("/daq/QueueDaq", json.dumps(spec))
        for _ in range(500):
            status = yield caller.call("/daq/GetDaqStatus", "LOW.1")
            if status["alerts"]:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        [low] = status["alerts"]
        self.assertEqual((low["category"], low["severity"]), ("StorageLow", "Warning"))
        self.assertIn("below the reserve", low["description"])
        internal = yield caller.call("/daq/GetInternalDaqStatus", "LOW.1")
        self.assertEqual(internal["detail"]["processes"], [], "no stage started")
        os.unlink(filler)
        final = yield caller.wait_for("LOW.1", "Completed")
        self.assertEqual(final["alerts"], [])
        del service

