"""A source broken, then fixed, completes its DAQ: real servers, the real merger, astropy files.

* A source truncated after ``QueueDaq`` and before collection is collected
  truncated; the merger cannot read it (``MergeError``, exit 4).  The file is
  restored and ``RetryMergeDaq`` collects it again: ``Completed``, with a
  product whose checksums verify and a manifest naming the restored checksum.
* A source changed between collection and merge, with no retry, is
  ``SourceChanged`` and no product is made of it.
* A server killed (SIGKILL) while the retry collects again resumes after a
  restart: exactly one product at each receiver.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.fitsfactory import image_hdu, open_verified, write_fits
from tests.rpcclient import start_server
from tests.test_daq_integration import ChildServerTestCase
from tests.torture import RECOLLECT_POINT, SOURCE_ROOT


def detector_file(path: Path) -> bytes:
    """An astropy-made source of two extensions; its bytes, to restore it later."""
    write_fits(str(path), [("INSTRUME", "TEST")],
               extensions=[image_hdu("CHIP1", (64, 64), seed=1), image_hdu("CHIP2", seed=2)])
    return path.read_bytes()


def truncate(path: Path) -> None:
    """Cut the file in the middle of its data (the header stays: collection takes it)."""
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)


def specification(daq_id: str, location: str, receivers: list[Path]) -> str:
    return json.dumps({
        "id": daq_id,
        "sources": [
            {"type": "fitsKeywords", "sourceName": "ocm",
             "keywords": [{"type": "valueKeyword", "name": "OBJECT", "value": daq_id}]},
            {"type": "fitsFile", "sourceName": "dcs", "location": location},
        ],
        "target": {"fileId": daq_id},
        "receivers": [{"type": "olasReceiver", "path": str(path)} for path in receivers],
    })  # fmt: skip


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RealServerTests(TestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()
        self.inbox = self.root / "olas"
        self.inbox.mkdir()

    @inlineCallbacks
    def poll(self, caller: Any, daq_id: str, condition: Any, seconds: float = 60) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            internal = yield caller.call("/daq/GetInternalDaqStatus", daq_id)
            if condition(internal):
                return internal
            yield deferLater(reactor, 0.02, lambda: None)
        raise AssertionError(f"{daq_id}: condition never met: {internal}")

    @inlineCallbacks
    def test_a_source_truncated_then_restored_completes_after_a_retry(self) -> None:
        source = self.root / "dcs.fits"
        original = detector_file(source)
        service, caller = yield start_server(self, self.root)
        # The blocker holds the one DAQ slot (its file is still to come): the DAQ waits.
        yield caller.call("/daq/QueueDaq", specification("BLOCK.1", "late.fits", [self.inbox]))
        yield self.poll(caller, "BLOCK.1", lambda i: i["status"]["error"])
        yield caller.call("/daq/QueueDaq", specification("FIX.1", str(source), [self.inbox]))
        truncate(source)  # after QueueDaq, before collection
        yield caller.call("/daq/AbortDaq", "BLOCK.1")
        failed = yield self.poll(caller, "FIX.1", lambda i: i["status"]["error"])
        # Only the Error alert is the test's: a Warning (StorageLow on a small CI disk)
        # may stand beside it.
        errors = [a for a in failed["status"]["alerts"] if a["severity"] == "Error"]
        self.assertEqual(len(errors), 1, failed["status"]["alerts"])
        [alert] = errors
        self.assertEqual((alert["category"], alert["terminal"]), ("MergeError", True))
        self.assertIn("exit status 4", alert["description"])
        self.assertIn("RetryMergeDaq collects the sources again", alert["description"])
        [collected] = failed["detail"]["sources"]
        self.assertEqual(collected["sha256"], sha256(source.read_bytes()), "truncated, hashed")

        source.write_bytes(original)  # the operator restores it
        yield caller.call("/daq/RetryMergeDaq", "FIX.1")
        final = yield caller.wait_for("FIX.1", "Completed")
        self.assertFalse(final["error"])
        product = self.inbox / "FIX.1.fits"
        with open_verified(str(product)) as hdus:
            self.assertEqual([hdu.name for hdu in hdus[1:]], ["CHIP1", "CHIP2"])
        manifest = json.loads((self.inbox / "FIX.1.fits.json").read_bytes())
        [entry] = manifest["sources"]
        self.assertEqual((entry["sha256"], entry["size"], entry["collections"]),
                         (sha256(original), len(original), 2))  # fmt: skip
        self.assertEqual([earlier["sha256"] for earlier in entry["superseded"]],
                         [collected["sha256"]])  # fmt: skip
        internal = yield caller.call("/daq/GetInternalDaqStatus", "FIX.1")
        self.assertEqual(internal["detail"]["stages"]["collecting"]["attempts"], 2)
        [recollected] = [e["recollected"] for e in internal["detail"]["history"]
                         if "recollected" in e]  # fmt: skip
        self.assertEqual(recollected["dcs"], {"before": collected["sha256"],
                                              "after": sha256(original)})
        del service

    @inlineCallbacks
    def test_a_source_changed_between_collection_and_merge_makes_no_product(self) -> None:
        hold = self.root / "hold-merges"
        hold.touch()
        gate = self.root / "python-with-a-gate"
        gate.write_text(
            "#!/bin/sh\n"
            f'if [ "$2" = dpmd.merge ]; then while [ -e {hold} ]; do sleep 0.02; done; fi\n'
            f'exec {sys.executable} "$@"\n'
        )
        gate.chmod(gate.stat().st_mode | stat.S_IXUSR)
        first, second = self.root / "first.fits", self.root / "second.fits"
        detector_file(first)
        detector_file(second)
        service, caller = yield start_server(
            self, self.root, **{"python": str(gate), "limits.daq": 2, "limits.merge": 1})
        yield caller.call("/daq/QueueDaq", specification("HOLD.1", str(first), [self.inbox]))
        yield self.poll(caller, "HOLD.1", lambda i: i["detail"]["processes"])
        yield caller.call("/daq/QueueDaq", specification("CHG.1", str(second), [self.inbox]))
        yield self.poll(caller, "CHG.1", lambda i: "waiting for a merge slot" in (
            (i["detail"]["progress"] or {}).get("stage", "")))  # collected, waiting
        truncate(second)  # nobody asked for this
        hold.unlink()
        yield caller.wait_for("HOLD.1", "Completed")
        refused = yield self.poll(caller, "CHG.1", lambda i: i["status"]["error"])
        [alert] = [a for a in refused["status"]["alerts"] if a["severity"] == "Error"]
        self.assertEqual((alert["category"], alert["key"], alert["terminal"]),
                         ("SourceChanged", "dcs", False))  # fmt: skip
        self.assertIn("call RetryMergeDaq: the retry collects it again", alert["description"])
        self.assertEqual(refused["detail"]["processes"], [], "no merger ran for it")
        self.assertEqual(sorted(p.name for p in self.inbox.iterdir()),
                         ["HOLD.1.fits", "HOLD.1.fits.json"], "no product of CHG.1")  # fmt: skip
        del service


class KilledDuringTheRecollectionTests(ChildServerTestCase):
    """SIGKILL while the retry collects again: after a restart it goes on, once."""

    def start_armed(self) -> tuple[subprocess.Popen[bytes], int, Path]:
        """A server that kills itself inside the re-collection window."""
        log = self.root / f"twistd-{time.monotonic_ns()}.log"
        marker = self.root / "hit"
        argv = [sys.executable, "-m", "tests.torture", "serve", "--crash-at", RECOLLECT_POINT,
                "--marker", str(marker), "--", "--nodaemon", "--pidfile=", f"--logfile={log}",
                "dpmd", "--config", str(self.config)]  # fmt: skip
        environ = dict(os.environ, PYTHONPATH=SOURCE_ROOT, DATAROOT=str(self.root))
        process = subprocess.Popen(argv, cwd=self.root, env=environ,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            for line in (log.read_text() if log.exists() else "").splitlines():
                if "dpmd serving workspace" in line:
                    return process, int(line.rsplit(":", 1)[1]), marker
            time.sleep(0.02)
        raise AssertionError(f"dpmd did not start: {log.read_text() if log.exists() else ''}")

    def wait(self, port: int, daq_id: str, condition: Any, seconds: float = 60) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            [internal] = self.rpc(port, ("/daq/GetInternalDaqStatus", [daq_id]))
            if condition(internal):
                return internal
            time.sleep(0.05)
        raise AssertionError(f"{daq_id}: condition never met: {internal}")

    def test_the_retry_resumes_after_a_restart_with_one_product_per_receiver(self) -> None:
        inboxes = [self.root / "olas", self.root / "science"]
        for inbox in inboxes:
            inbox.mkdir()
        source = self.root / "dcs.fits"
        original = detector_file(source)
        truncate(source)
        process, port, marker = self.start_armed()
        [reply] = self.rpc(port, ("/daq/QueueDaq", [specification("KILL.1", str(source),
                                                                   inboxes)]))
        self.assertEqual(reply, {"id": "KILL.1", "error": False})
        self.wait(port, "KILL.1", lambda i: i["status"]["error"])
        source.write_bytes(original)
        [retried] = self.rpc(port, ("/daq/RetryMergeDaq", ["KILL.1"]))
        self.assertIsNone(retried)
        self.assertEqual(process.wait(timeout=60), -signal.SIGKILL)
        self.assertTrue(marker.exists(), "it died inside the re-collection")

        process, port = self.start()
        final = self.wait(port, "KILL.1", lambda i: i["status"]["substate"] == "Completed", 120)
        [entry] = final["detail"]["sources"]
        self.assertEqual((entry["sha256"], entry["collections"]), (sha256(original), 2))
        for inbox in inboxes:
            self.assertEqual(sorted(p.name for p in inbox.iterdir()),
                             ["KILL.1.fits", "KILL.1.fits.json"], inbox)  # fmt: skip
            with open_verified(str(inbox / "KILL.1.fits")) as hdus:
                self.assertEqual([hdu.name for hdu in hdus[1:]], ["CHIP1", "CHIP2"])
            manifest = json.loads((inbox / "KILL.1.fits.json").read_bytes())
            self.assertEqual(manifest["sources"][0]["sha256"], sha256(original))
        self.rpc(port, ("/dpm/Exit", []))
        self.assertEqual(process.wait(timeout=60), 0)
