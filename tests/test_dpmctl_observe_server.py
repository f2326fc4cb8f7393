"""``dpmctl provenance``, ``timeline``, ``check``, ``fsck`` and alert hints against a real dpmd.

Products and sources are real FITS files (the demo's, written by dpmd's own
writer) and are read back with astropy; ``tests.test_dpmctl_observe`` checks
the output line by line against canned answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from astropy.io import fits
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from dpmd.client.demo import prepare_sources, write_detector_file
from dpmd.client.units import human_size, utc_time
from tests.test_client_support import DpmctlCase

TERMINAL = "retry will not help until the cause is fixed"


class ServerTestCase(DpmctlCase):
    """The demo's DAQ, and statuses polled until they are ready."""

    @inlineCallbacks
    def demo(self) -> Any:
        status, out, err = yield self.dpmctl("--json", "demo", "--dir", str(self.sources))
        self.assertEqual((status, err), (0, ""))
        return json.loads(out)

    @inlineCallbacks
    def status_when(self, daq_id: str, ready: Callable[[dict[str, Any]], bool]) -> Any:
        """The DAQ's status (as JSON) once ``ready`` says so; asked every 50 ms."""
        for _ in range(200):
            _, out, _ = yield self.dpmctl("--json", "status", daq_id)
            status = json.loads(out)
            if ready(status):
                return status
            yield deferLater(reactor, 0.05, lambda: None)
        self.fail(f"{daq_id} never got there: {status}")


class ProvenanceTests(ServerTestCase):
    @inlineCallbacks
    def test_every_card_of_the_product_header_with_its_source(self) -> Any:
        made = yield self.demo()
        status, out, _ = yield self.dpmctl("--json", "provenance", made["id"])
        self.assertEqual(status, 0)
        entries = json.loads(out)
        header = fits.getheader(made["product"])
        self.assertEqual([entry["card"] for entry in entries],
                         [card.image for card in header.cards])  # fmt: skip
        source = {entry["keyword"]: entry["source"] for entry in entries}
        self.assertEqual(source["OBJECT"], "ocm")  # the keyword list of the specification
        self.assertEqual(source["HIERARCH ESO DET DIT"], "dcs")
        self.assertEqual(source["HIERARCH ESO INS FILT1 NAME"], "fcs")
        self.assertEqual(source["CHECKSUM"], "(dpmd-merge)")
        status, out, _ = yield self.dpmctl("provenance", made["id"])
        self.assertEqual(len(out.splitlines()), len(entries) + 1)  # a row per card, a header
        status, out, _ = yield self.dpmctl("provenance", made["id"], "DET.DIT")
        self.assertEqual(status, 0)
        self.assertEqual(out.splitlines()[:2], [header.cards["HIERARCH ESO DET DIT"].image.rstrip(),
                                                "  source    dcs"])  # fmt: skip

    @inlineCallbacks
    def test_a_daq_that_is_not_merged_is_refused(self) -> Any:
        status, _, err = yield self.dpmctl("provenance", "NOPE")
        self.assertEqual(status, 1)
        self.assertIn("NOPE", err)


class TimelineTests(ServerTestCase):
    @inlineCallbacks
    def test_a_demo_in_the_window_and_not_outside_it(self) -> Any:
        made = yield self.demo()
        _, out, _ = yield self.dpmctl("--json", "internal", made["id"])
        queued = json.loads(out)["detail"]["queued_at"]
        since, until = utc_time(queued - 1), utc_time(queued + 3600)
        status, out, _ = yield self.dpmctl("--json", "timeline", "--since", since,
                                           "--until", until)  # fmt: skip
        self.assertEqual(status, 0)
        timeline = json.loads(out)
        [daq] = timeline["daqs"]
        self.assertEqual((daq["id"], daq["substate"]), (made["id"], "Completed"))
        self.assertEqual(list(daq["stages"]), ["collecting", "merging", "releasing"])
        self.assertEqual(daq["stages"]["merging"]["bytes"], made["size"])
        # The merger is a Python interpreter with its imports: tens of MiB, far below a GiB.
        peak = daq["stages"]["merging"]["peak_rss_bytes"]
        self.assertTrue(10 << 20 <= peak < 1 << 30, peak)
        self.assertEqual(timeline["summary"]["merging"]["max_peak_rss_bytes"], peak)
        self.assertEqual({name: entry["count"] for name, entry in timeline["summary"].items()},
                         {"collecting": 1, "merging": 1, "releasing": 1})  # fmt: skip
        status, out, _ = yield self.dpmctl("timeline", "--since", since)
        self.assertEqual(status, 0)
        [row] = [line for line in out.splitlines() if line.startswith(made["id"])]
        self.assertEqual(row.split()[1], "Completed")
        self.assertIn(f" {human_size(peak)}", row)
        [merging] = [line for line in out.splitlines() if line.startswith("merging ")]
        self.assertTrue(merging.rstrip().endswith(human_size(peak)), merging)
        status, out, _ = yield self.dpmctl("timeline", "--until", utc_time(queued - 60))
        self.assertEqual(out.splitlines()[0].split()[0], "0")


class CheckTests(ServerTestCase):
    @inlineCallbacks
    def test_a_good_and_a_bad_specification_and_nothing_queued(self) -> Any:
        spec = prepare_sources(self.sources, "DEMO.2026-01-01T00:00:00.000")
        status, out, err = yield self.dpmctl("check", str(self.sources / "spec.json"))
        self.assertEqual((status, err), (0, ""), out)
        self.assertEqual(out.splitlines()[0], "ok: nothing found that would stop this DAQ")
        names = [line.split()[1] for line in out.splitlines()[-4:]]
        self.assertEqual(names, ["PRIMARY", "CHIP1", "CHIP2", "FCS_EVENTS"])
        spec["sources"][1]["location"] = str(self.sources / "missing.fits")
        status, out, _ = yield self.dpmctl("--json", "check", "-", stdin=json.dumps(spec))
        self.assertEqual(status, 1)
        check = json.loads(out)
        self.assertFalse(check["ok"])
        self.assertTrue(any("missing.fits" in problem for problem in check["problems"]))
        status, out, _ = yield self.dpmctl("--json", "active")
        self.assertEqual((status, json.loads(out)), (0, []))
        self.assertEqual(list((self.service.config.workspace / "daqs").iterdir()), [])


class FsckTests(ServerTestCase):
    @inlineCallbacks
    def test_a_planted_folder_before_and_after_repair(self) -> Any:
        status, out, _ = yield self.dpmctl("fsck")
        self.assertEqual((status, out), (0, "no problems found\n"))
        # In archive/: a left-over in daqs/ could be tidied away by the server's own start-up.
        stray = self.service.config.workspace / "archive" / "STRAY.1"
        stray.mkdir(parents=True)
        status, out, _ = yield self.dpmctl("fsck")
        self.assertEqual(status, 1)
        self.assertEqual(out.splitlines()[1].split()[:2], ["folder-without-record", str(stray)])
        self.assertTrue(stray.exists())
        status, out, _ = yield self.dpmctl("--json", "fsck", "--repair")
        self.assertEqual(status, 0)
        [problem] = json.loads(out)["problems"]
        self.assertEqual((problem["path"], problem["repaired"]), (str(stray), True))
        self.assertFalse(stray.exists())
        status, out, _ = yield self.dpmctl("fsck")
        self.assertEqual((status, out), (0, "no problems found\n"))


class AlertHintTests(ServerTestCase):
    @inlineCallbacks
    def test_a_terminal_failure_its_attempts_and_the_stages(self) -> Any:
        daq_id = "TEST.HINT"
        spec = prepare_sources(self.sources, daq_id)
        detector = Path(spec["sources"][1]["location"])
        detector.write_text("not FITS\n")
        status, _, _ = yield self.dpmctl("queue", "-", stdin=json.dumps(spec))
        self.assertEqual(status, 0)
        blocked = yield self.status_when(daq_id, lambda status: status["error"])
        [alert] = [alert for alert in blocked["alerts"] if alert["severity"] == "Error"]
        self.assertEqual((alert["terminal"], alert["attempts"]), (True, 1))
        status, out, _ = yield self.dpmctl("status", daq_id)
        self.assertIn(f"(1 attempt; {TERMINAL})", out)
        status, out, _ = yield self.dpmctl("retry", daq_id)  # still not FITS: it fails again
        again = yield self.status_when(
            daq_id, lambda status: any(alert.get("attempts") == 2 for alert in status["alerts"])
        )
        self.assertTrue(again["error"])
        status, out, _ = yield self.dpmctl("internal", daq_id)
        self.assertIn(f"(2 attempts; {TERMINAL})", out)
        lines = out.splitlines()
        collecting = lines[lines.index("stages:") + 2].split(None, 5)
        self.assertEqual(collecting[:2], ["collecting", "2"])
        self.assertIn("dcs", collecting[5])  # the last error names the source
        detector.unlink()
        write_detector_file(detector, "2026-01-01T00:00:00")
        yield self.dpmctl("retry", daq_id)
        status, out, _ = yield self.dpmctl("watch", daq_id)
        self.assertEqual(status, 0)
        status, out, _ = yield self.dpmctl("internal", daq_id)
        lines = out.splitlines()
        rows = [line.split()[:2] for line in lines[lines.index("stages:") + 2 :][:3]]
        self.assertEqual(rows, [["collecting", "3"], ["merging", "1"], ["releasing", "1"]])
