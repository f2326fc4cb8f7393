"""``dpmctl demo``: the generated sources, the specification and the run on a fake wire."""

from __future__ import annotations

import io
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dpmd.client.cli import Context, execute
from dpmd.client.console import Console
from dpmd.client.demo import daq_id_for, prepare_sources, summary, summary_text
from dpmd.client.options import build_parser
from dpmd.model import AlertSeverity, DaqAlert, DaqStatus, DaqSubState
from tests.test_client_fits import strictly_opened
from tests.test_client_support import FakeServer

T0 = 1767225600.25  # 2026-01-01T00:00:00.250Z
DAQ_ID = "DEMO.2026-01-01T00:00:00.250"


class SourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        self.spec = prepare_sources(self.directory, DAQ_ID)

    def test_ids_are_unique_per_millisecond_and_in_the_allowed_characters(self) -> None:
        self.assertEqual(daq_id_for(T0), DAQ_ID)
        self.assertNotEqual(daq_id_for(T0 + 0.001), DAQ_ID)
        self.assertRegex(DAQ_ID, r"\A[A-Za-z0-9._:+-]{1,128}\Z")

    def test_detector_file(self) -> None:
        with strictly_opened(self.directory / "dcs_0001.fits") as hdus:
            self.assertEqual([hdu.name for hdu in hdus], ["PRIMARY", "CHIP1", "CHIP2"])
            self.assertIsNone(hdus[0].data)
            self.assertEqual(hdus[0].header["HIERARCH ESO DET DIT"], 10.0)
            for chip in hdus[1:]:
                self.assertEqual(chip.data.shape, (128, 128))
                self.assertGreater(chip.data.max(), 2 * chip.data.mean())  # there are stars

    def test_focal_plane_file(self) -> None:
        with strictly_opened(self.directory / "fcs_0001.fits") as hdus:
            self.assertEqual([hdu.name for hdu in hdus], ["PRIMARY", "FCS_EVENTS"])
            header = hdus[0].header
            self.assertEqual(header["HIERARCH ESO INS FILT1 NAME"], "Ks")
            self.assertIn("HIERARCH ESO INS TEMP1 VAL", header)
            self.assertEqual(len(hdus[1].data), 5)
            self.assertEqual(hdus[1].columns.names, ["TIME", "DEVICE", "POSITION"])

    def test_specification(self) -> None:
        spec = self.spec
        self.assertEqual(json.loads((self.directory / "spec.json").read_text()), spec)
        self.assertEqual((spec["id"], spec["target"]), (DAQ_ID, {"fileId": DAQ_ID}))
        ocm, dcs, fcs = spec["sources"]
        self.assertEqual(ocm["type"], "fitsKeywords")
        self.assertEqual(
            [(keyword["type"], keyword.get("name")) for keyword in ocm["keywords"]],
            [
                ("valueKeyword", "ORIGIN"),
                ("valueKeyword", "OBJECT"),
                ("valueKeyword", "RA"),
                ("valueKeyword", "DEC"),
                ("esoKeyword", "OBS TPLNO"),
                ("literalKeyword", None),
            ],
        )
        self.assertEqual(dcs["location"], str(self.directory / "dcs_0001.fits"))
        self.assertNotIn("keywordRules", dcs)
        self.assertTrue(Path(fcs["location"]).is_absolute())
        self.assertEqual(
            fcs["keywordRules"],
            [{"type": "filter", "selectionPatterns": ["+e INS *", "-e INS TEMP1 *"]}],
        )

    def test_summary(self) -> None:
        path = str(self.directory / "dcs_0001.fits")
        facts = summary(path)
        self.assertEqual(
            facts["keywords"],
            {
                "INSTRUME": "DEMO",
                "DATE-OBS": "2026-01-01T00:00:00.250",
                "HIERARCH ESO DET DIT": 10.0,
                "HIERARCH ESO DET NDIT": 3,
            },
        )
        self.assertEqual(
            summary_text(path, facts).splitlines(),
            [
                f"product: {path}",
                f"size:    {facts['size'] / 1024:.1f} KiB",
                "HDUs:",
                "  0  PRIMARY     PrimaryHDU    header only",
                "  1  CHIP1       ImageHDU      128 x 128",
                "  2  CHIP2       ImageHDU      128 x 128",
                "keywords:",
                "  INSTRUME              = 'DEMO'",
                "  DATE-OBS              = '2026-01-01T00:00:00.250'",
                "  HIERARCH ESO DET DIT  = 10.0",
                "  HIERARCH ESO DET NDIT = 3",
            ],
        )
        table_facts = summary(str(self.directory / "fcs_0001.fits"))
        self.assertEqual(table_facts["hdus"][1]["rows"], 5)


class RunTests(SynchronousTestCase):
    """The demo's conversation with the server, the test playing the server."""

    def demo(
        self, *argv: str, temporary: bool = False, directory: Path | None = None
    ) -> Deferred[int]:
        self.server = FakeServer()
        self.out, self.err = io.StringIO(), io.StringIO()
        if temporary:  # no --dir: a new folder in the temporary directory, here the test's
            self.temporary = Path(self.mktemp()).absolute()
            self.temporary.mkdir()
            self.patch(tempfile, "tempdir", str(self.temporary))
            options = build_parser({}).parse_args(["demo", *argv])
        else:
            self.directory = directory or Path(self.mktemp()).absolute()
            options = build_parser({}).parse_args(["demo", "--dir", str(self.directory), *argv])
        clock = Clock()
        clock.advance(T0)
        console = Console(self.out, self.err, options.json, False)
        return ensureDeferred(execute(Context(self.server.client, options, console, clock, None)))

    def queue_and_follow(self, final: dict[str, Any]) -> None:
        if not hasattr(self, "directory"):
            [self.directory] = self.temporary.iterdir()
            self.assertTrue(self.directory.name.startswith("dpmctl-demo-"))
        self.assertEqual(self.server.reply(None)["method"], "Subscribe")  # before QueueDaq
        request = self.server.reply({"id": DAQ_ID, "error": False})
        self.assertEqual(request["method"], "/daq/QueueDaq")
        spec = json.loads(request["params"]["specification"])
        self.assertEqual(spec, json.loads((self.directory / "spec.json").read_text()))
        query = self.server.reply({"status": final, "detail": {}})
        self.assertEqual(
            (query["method"], query["params"]), ("/daq/GetInternalDaqStatus", {"id": DAQ_ID})
        )

    def test_completed_shows_the_product(self) -> None:
        done = self.demo()
        product = str(self.directory / "dcs_0001.fits")  # any FITS file serves as the product
        self.queue_and_follow(
            DaqStatus(DAQ_ID, DAQ_ID, DaqSubState.Completed, result=product, timestamp=T0).to_json()
        )
        self.assertEqual(self.successResultOf(done), 0)
        lines = self.out.getvalue().splitlines()
        self.assertEqual(
            lines[:3],
            [f"sources: {self.directory}", f"queueing {DAQ_ID}", f"00:00:00  {DAQ_ID}  Completed"],
        )
        self.assertIn(f"product: {product}", lines)
        self.assertIn("  1  CHIP1       ImageHDU      128 x 128", lines)

    def test_json_is_one_object_with_the_product(self) -> None:
        done = self.demo("--json")
        product = str(self.directory / "fcs_0001.fits")
        self.queue_and_follow(
            DaqStatus(DAQ_ID, DAQ_ID, DaqSubState.Completed, result=product, timestamp=T0).to_json()
        )
        self.assertEqual(self.successResultOf(done), 0)
        [line] = self.out.getvalue().splitlines()
        result = json.loads(line)
        self.assertEqual((result["id"], result["product"]), (DAQ_ID, product))
        self.assertEqual(result["sources"], str(self.directory))
        self.assertEqual([hdu["name"] for hdu in result["hdus"]], ["PRIMARY", "FCS_EVENTS"])

    def test_an_error_alert_stops_the_demo(self) -> None:
        done = self.demo()
        alert = DaqAlert("MergeError", "", AlertSeverity.Error, "merger exited with 4", T0)
        self.queue_and_follow(
            DaqStatus(DAQ_ID, DAQ_ID, DaqSubState.Merging, (alert,), "merge failed").to_json()
        )
        self.assertEqual(self.successResultOf(done), 1)
        self.assertEqual(
            self.err.getvalue(),
            f"dpmctl: demo DAQ {DAQ_ID} stopped in Merging: merge failed\n"
            "  Error MergeError: merger exited with 4\n"
            f"  details: dpmctl internal {DAQ_ID}\n"
            f"  then: dpmctl retry {DAQ_ID}, or dpmctl abort {DAQ_ID}\n",
        )

    def test_aborted(self) -> None:
        done = self.demo()
        self.queue_and_follow(DaqStatus(DAQ_ID, DAQ_ID, DaqSubState.Aborted).to_json())
        self.assertEqual(self.successResultOf(done), 1)
        self.assertIn("stopped in Aborted", self.err.getvalue())

    def test_a_temporary_folder_is_removed_once_the_daq_is_final(self) -> None:
        for final in (DaqSubState.Completed, DaqSubState.Aborted):
            done = self.demo(temporary=True)
            product = str(self.temporary / "product.fits")
            self.queue_and_follow(DaqStatus(DAQ_ID, DAQ_ID, final, result=product).to_json())
            self.successResultOf(done)
            self.assertEqual(list(self.temporary.iterdir()), [])
            self.assertNotIn("sources stay", self.err.getvalue())
            del self.directory

    def test_keep_keeps_the_temporary_folder(self) -> None:
        done = self.demo("--keep", temporary=True)
        self.queue_and_follow(DaqStatus(DAQ_ID, DAQ_ID, DaqSubState.Aborted).to_json())
        self.successResultOf(done)
        self.assertTrue((self.directory / "spec.json").is_file())

    def test_a_daq_that_waits_for_a_retry_keeps_its_sources(self) -> None:
        done = self.demo(temporary=True)
        alert = DaqAlert("MergeError", "", AlertSeverity.Error, "merger exited with 4", T0)
        self.queue_and_follow(DaqStatus(DAQ_ID, DAQ_ID, DaqSubState.Merging, (alert,)).to_json())
        self.assertEqual(self.successResultOf(done), 1)
        self.assertTrue((self.directory / "dcs_0001.fits").is_file())
        self.assertIn(
            f"dpmctl: the sources stay in {self.directory}: DAQ {DAQ_ID} still needs them\n",
            self.err.getvalue(),
        )

    def test_a_refused_queue_removes_the_temporary_folder(self) -> None:
        done = self.demo(temporary=True)
        [self.directory] = self.temporary.iterdir()
        self.server.reply(None)
        data = {"exception": "DaqException", "id": DAQ_ID, "message": "disk full"}
        self.server.reply(error={"code": -32000, "message": "disk full", "data": data})
        self.assertEqual(self.successResultOf(done), 1)
        self.assertEqual(list(self.temporary.iterdir()), [])
        self.assertEqual(self.err.getvalue(), "dpmctl: disk full\n")

    def test_the_same_dir_twice(self) -> None:
        directory = Path(self.mktemp()).absolute()
        for _ in range(2):
            done = self.demo(directory=directory)
            product = str(self.directory / "dcs_0001.fits")
            self.queue_and_follow(
                DaqStatus(DAQ_ID, DAQ_ID, DaqSubState.Completed, result=product).to_json()
            )
            self.assertEqual(self.successResultOf(done), 0)

    def test_json_failure_is_one_object(self) -> None:
        done = self.demo("--json")
        alert = DaqAlert("MergeError", "", AlertSeverity.Error, "merger exited with 4", T0)
        final = DaqStatus(DAQ_ID, DAQ_ID, DaqSubState.Merging, (alert,), "merge failed")
        self.queue_and_follow(final.to_json())
        self.assertEqual(self.successResultOf(done), 1)
        [line] = self.out.getvalue().splitlines()
        error = json.loads(line)["error"]
        self.assertEqual((error["kind"], error["code"]), ("DemoStopped", None))
        self.assertEqual(error["data"], final.to_json())

    def test_a_directory_that_cannot_be_made_is_a_usage_error(self) -> None:
        blocker = Path(self.mktemp())
        blocker.write_text("a file, not a directory")
        self.server = FakeServer()
        err = io.StringIO()
        options = build_parser({}).parse_args(["demo", "--dir", str(blocker / "sub")])
        console = Console(io.StringIO(), err, False, False)
        done = ensureDeferred(execute(Context(self.server.client, options, console, Clock(), None)))
        self.assertEqual(self.successResultOf(done), 2)
        self.assertTrue(re.match(r"dpmctl: cannot use --dir .*/sub: ", err.getvalue()))
        self.assertEqual(self.server.requests(), [])
