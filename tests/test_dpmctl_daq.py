"""``dpmctl`` end to end against a real dpmd with its ``/daq`` interface."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from astropy.io import fits
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, inlineCallbacks
from twisted.internet.task import deferLater

from dpmd.client import connect
from dpmd.client.demo import prepare_sources, write_detector_file
from dpmd.client.watch import SilentView, Watcher
from dpmd.model import DaqStatus, DaqSubState
from tests.test_client_support import DpmctlCase
from tests.test_dpmctl import dpmctl

STAGES = ["Scheduled", "Collecting", "Merging", "Releasing", "Completed"]


class DaqCommandTests(DpmctlCase):
    @inlineCallbacks
    def blocked_daq(self, daq_id: str) -> Any:
        """Queue a DAQ whose detector file is no FITS file; returns once it is blocked."""
        spec = prepare_sources(self.sources, daq_id)
        Path(spec["sources"][1]["location"]).write_text("not FITS\n")
        client = yield connect(self.endpoint, reactor)
        self.addCleanup(client.close)
        watcher = Watcher(client, reactor, SilentView(), daq_id, stop_on_error=True)
        yield ensureDeferred(watcher.subscribe())
        status, out, err = yield self.dpmctl("queue", "-", stdin=json.dumps(spec))
        self.assertEqual((status, out, err), (0, f"queued {daq_id}\n", ""))
        blocked: DaqStatus = yield ensureDeferred(watcher.follow())
        self.assertTrue(blocked.error)
        return spec, blocked

    @inlineCallbacks
    def test_demo_makes_a_real_product(self) -> Any:
        out, err, status = yield dpmctl(
            "--connect", self.endpoint, "demo", "--dir", str(self.sources)
        )
        self.assertEqual((status, err), (0, b""), out)
        lines = out.decode().splitlines()
        substates = [line.split()[2] for line in lines if line[:2].isdigit() and "DEMO." in line]
        seen = [stage for stage in STAGES if stage in substates]
        self.assertEqual(seen, STAGES)  # the watch showed every stage, in order
        [product] = [
            line.removeprefix("product: ") for line in lines if line.startswith("product:")
        ]
        self.assertTrue(Path(product).is_absolute())
        with fits.open(product, checksum=True) as hdus:
            self.assertEqual(
                [hdu.name for hdu in hdus], ["PRIMARY", "CHIP1", "CHIP2", "FCS_EVENTS"]
            )
            header = hdus[0].header
            self.assertEqual(header["OBJECT"], "NGC 1365")
            self.assertEqual(header["HIERARCH ESO DET DIT"], 10.0)
            self.assertEqual(header["HIERARCH ESO INS FILT1 NAME"], "Ks")
            self.assertNotIn("HIERARCH ESO INS TEMP1 VAL", header)  # the keyword rule's work
            self.assertNotIn("HIERARCH ESO TEL FOCU VALUE", header)
            self.assertEqual(hdus[1].data.shape, (128, 128))
            self.assertEqual(len(hdus[3].data), 5)
        self.assertIn("  3  FCS_EVENTS  BinTableHDU   5 rows", lines)

    @inlineCallbacks
    def test_demo_json(self) -> Any:
        status, out, err = yield self.dpmctl("--json", "demo", "--dir", str(self.sources))
        self.assertEqual((status, err), (0, ""))
        [line] = out.splitlines()
        result = json.loads(line)
        with fits.open(result["product"]) as hdus:
            self.assertEqual(len(hdus), 4)
        self.assertEqual(result["keywords"]["OBJECT"], "NGC 1365")
        status, out, _ = yield self.dpmctl("--json", "internal", result["id"])
        self.assertEqual(status, 0)
        self.assertEqual(json.loads(out)["status"]["result"], result["product"])

    @inlineCallbacks
    def test_demo_twice_in_the_same_dir(self) -> Any:
        products = []
        for _ in range(2):
            status, out, err = yield self.dpmctl("--json", "demo", "--dir", str(self.sources))
            self.assertEqual((status, err), (0, ""))
            products.append(json.loads(out)["product"])
        self.assertNotEqual(products[0], products[1])
        for product in products:
            with fits.open(product, checksum=True) as hdus:
                self.assertEqual(len(hdus), 4)

    @inlineCallbacks
    def test_status_and_internal_of_an_archived_daq(self) -> Any:
        status, out, _ = yield self.dpmctl("--json", "demo", "--dir", str(self.sources))
        self.assertEqual(status, 0)
        result = json.loads(out)
        internal = {}
        for _ in range(200):  # archiving follows Completed on a later turn
            status, out, _ = yield self.dpmctl("--json", "internal", result["id"])
            internal = json.loads(out)
            if internal["detail"]["archived"]:
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertTrue(internal["detail"]["archived"])
        status, out, err = yield self.dpmctl("status", result["id"])
        self.assertEqual((status, err), (0, ""))
        self.assertIn(f"result   {result['product']}", out)
        self.assertIn("StateCompleted / Completed", out)
        status, out, _ = yield self.dpmctl("internal", result["id"])
        self.assertIn(f"{result['product']} (", out)  # the receiver's path and how it got there
        [receiver] = internal["detail"]["released"].values()
        self.assertEqual(receiver["path"], result["product"])

    @inlineCallbacks
    def test_refusals_are_exit_status_one(self) -> Any:
        status, out, err = yield self.dpmctl("status", "NOPE")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("NOPE", err)
        status, out, err = yield self.dpmctl("queue", "-", stdin='{"id": "X"}')
        self.assertEqual((status, out), (1, ""))
        self.assertIn("invalid specification", err)
        self.assertIn("sources", err)

    @inlineCallbacks
    def test_abort(self) -> Any:
        _, blocked = yield self.blocked_daq("TEST.ABORT")
        status, out, _ = yield self.dpmctl("active")
        self.assertEqual(status, 0)
        [row] = out.splitlines()[1:]
        self.assertEqual(row.split()[:3], ["TEST.ABORT", blocked.substate.value, "yes"])
        status, out, _ = yield self.dpmctl("status", "TEST.ABORT")
        self.assertEqual(status, 0)
        self.assertIn(f"Error   {blocked.alerts[0].category}", out)
        status, out, err = yield self.dpmctl("abort", "TEST.ABORT")
        self.assertEqual((status, out, err), (0, "aborted TEST.ABORT\n", ""))
        status, out, _ = yield self.dpmctl("watch", "TEST.ABORT")
        self.assertEqual(status, 1)  # the watched DAQ ended Aborted
        self.assertIn("TEST.ABORT  Aborted", out)
        status, _, err = yield self.dpmctl("abort", "TEST.ABORT")
        self.assertEqual(status, 1)
        self.assertIn("TEST.ABORT", err)
        status, out, _ = yield self.dpmctl("--json", "active")
        self.assertEqual((status, json.loads(out)), (0, []))

    @inlineCallbacks
    def test_retry_after_fixing_the_source(self) -> Any:
        spec, _ = yield self.blocked_daq("TEST.RETRY")
        status, _, _ = yield self.dpmctl("retry", "NOPE")
        self.assertEqual(status, 1)
        detector = Path(spec["sources"][1]["location"])
        detector.unlink()
        write_detector_file(detector, "2026-01-01T00:00:00")  # a good detector file now
        status, out, err = yield self.dpmctl("retry", "TEST.RETRY")
        self.assertEqual((status, out, err), (0, "retrying the merge of TEST.RETRY\n", ""))
        status, out, err = yield self.dpmctl("watch", "TEST.RETRY")
        watching = f"watching DAQ TEST.RETRY at {self.endpoint}; Ctrl-C to stop\n"
        self.assertEqual((status, err), (0, watching))
        self.assertIn("TEST.RETRY  Completed", out.splitlines()[-1])
        status, out, _ = yield self.dpmctl("--json", "internal", "TEST.RETRY")
        internal = json.loads(out)
        self.assertEqual(internal["status"]["substate"], DaqSubState.Completed.value)
        self.assertTrue(Path(internal["status"]["result"]).is_file())
        self.assertEqual(
            [source["name"] for source in internal["detail"]["sources"]],
            [source["sourceName"] for source in spec["sources"][1:]],
        )
