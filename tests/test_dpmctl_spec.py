"""``dpmctl spec new`` and ``dpmctl spec schema``: a valid start, and the schema as shipped."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dpmd.client.specification import (
    FITS_SIGNATURE,
    KEYWORDS_SOURCE,
    new_specification,
    packaged_schema,
    source_name,
)
from dpmd.spec import SCHEMA_PATH, parse_specification
from dpmd.stages import collect
from tests.fitsfactory import image_hdu, table_hdu, write_fits
from tests.test_client_support import DpmctlCase
from tests.test_dpmctl import dpmctl, main_output


def validate(document: dict[str, Any]) -> None:
    """Against the packaged schema by ``jsonschema`` itself, then by the server's parser."""
    jsonschema.Draft202012Validator(json.loads(packaged_schema())).validate(document)
    parse_specification(document)


class SourceNameTests(SynchronousTestCase):
    def names(self, *files: str) -> list[str]:
        taken = {KEYWORDS_SOURCE}
        return [source_name(file, taken) for file in files]

    def test_the_file_name_without_its_folder_and_suffix(self) -> None:
        self.assertEqual(
            self.names("/data/dcs_0001.fits", "fcs.FIT", "raw/tcs.fts", "tiles.fits.fz", "x.dat"),
            ["dcs_0001", "fcs", "tcs", "tiles", "x.dat"],
        )

    def test_characters_a_name_cannot_have_become_underscores(self) -> None:
        self.assertEqual(
            self.names("my frame (1).fits", ".hidden.fits", "-+.fits", "é.fits"),
            ["my_frame__1_", "hidden", "file", "_"],
        )

    def test_every_name_is_unique_and_none_takes_the_keyword_source_name(self) -> None:
        self.assertEqual(
            self.names("a/dcs.fits", "b/dcs.fits", "c/dcs.fits", "keywords.fits"),
            ["dcs", "dcs_2", "dcs_3", "keywords_2"],
        )

    def test_long_names_are_cut_to_the_schema_length(self) -> None:
        long = "x" * 100 + ".fits"
        first, second = self.names(long, long)
        self.assertEqual((len(first), len(second)), (64, 64))
        self.assertTrue(second.endswith("_2"))

    def test_the_signature_is_the_one_collection_checks(self) -> None:
        self.assertEqual(FITS_SIGNATURE, collect.FITS_SIGNATURE)


class NewSpecificationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = Path(self.mktemp()).absolute()
        self.folder.mkdir()
        self.dcs = write_fits(str(self.folder / "dcs.fits"), [("INSTRUME", "TEST")],
                              extensions=[image_hdu("CHIP1")])  # fmt: skip
        self.fcs = write_fits(str(self.folder / "fcs.fits"), extensions=[table_hdu("FCS")])
        self.patch(os, "getcwd", lambda: str(self.folder))  # os.path.abspath asks it

    def test_a_valid_specification_with_absolute_paths(self) -> None:
        document = new_specification(["dcs.fits", "fcs.fits"], "TEST.1")
        validate(document)
        self.assertEqual(document["id"], "TEST.1")
        self.assertEqual(document["target"], {"fileId": "TEST.1"})
        keywords, *files = document["sources"]
        self.assertEqual(
            keywords,
            {"type": "fitsKeywords", "sourceName": "keywords", "keywords": [
                {"type": "literalKeyword", "value": "HISTORY Merged by dpmd from 2 files"}]},
        )  # fmt: skip
        self.assertEqual(files, [
            {"type": "fitsFile", "sourceName": "dcs", "location": self.dcs},
            {"type": "fitsFile", "sourceName": "fcs", "location": self.fcs},
        ])  # fmt: skip
        self.assertNotIn("receivers", document)

    def test_receivers_are_absolute(self) -> None:
        (self.folder / "out").mkdir()
        document = new_specification(["dcs.fits"], "TEST.2", ["out", str(self.folder)])
        validate(document)
        self.assertEqual(document["receivers"], [
            {"type": "olasReceiver", "path": str(self.folder / "out")},
            {"type": "olasReceiver", "path": str(self.folder)},
        ])  # fmt: skip

    def spec_new(self, *argv: str) -> tuple[int, str, str]:
        return main_output(self, "spec", "new", *argv)

    def test_every_mistake_is_one_line_and_status_two(self) -> None:
        (self.folder / "notes.txt").write_text("hello")
        (self.folder / "folder").mkdir()
        for argv, message in [
            (["gone.fits"], "gone.fits: no such file"),
            (["folder"], "folder: is a directory, not a FITS file"),
            (["notes.txt"], "notes.txt: not a FITS file (it does not begin with 'SIMPLE  =')"),
            (["dcs.fits", "./dcs.fits"], "./dcs.fits: given twice"),
            (["--id", "A B", "dcs.fits"], "--id 'A B' cannot name a DAQ and its product: 1 "
             "to 63 letters, digits and _ - . : +, beginning with a letter, a digit or _"),
            (["--id", "", "dcs.fits"], "--id '' cannot name a DAQ and its product"),
            (["--id", "x" * 64, "dcs.fits"], "cannot name a DAQ and its product"),
            (["--receiver", "nowhere", "dcs.fits"], "--receiver nowhere: not an existing "
             "directory"),
        ]:  # fmt: skip
            status, out, err = self.spec_new(*argv)
            self.assertEqual((status, out), (2, ""), argv)
            self.assertEqual(len(err.splitlines()), 1, err)
            self.assertTrue(err.startswith("dpmctl: "), err)
            self.assertIn(message, err)

    def test_under_json_a_mistake_is_one_object(self) -> None:
        status, out, _ = self.spec_new("--json", "gone.fits")
        self.assertEqual(status, 2)
        self.assertEqual(
            json.loads(out),
            {"error": {"code": None, "kind": "UsageError", "message": "gone.fits: no such file"}},
        )

    def test_the_command_prints_the_specification(self) -> None:
        status, out, err = self.spec_new("dcs.fits", "--receiver", ".")
        self.assertEqual((status, err), (0, ""))
        document = json.loads(out)
        validate(document)
        self.assertRegex(document["id"], r"\ADAQ\.\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\Z")
        self.assertEqual(document["target"]["fileId"], document["id"])
        self.assertEqual(document["receivers"], [{"type": "olasReceiver",
                                                  "path": str(self.folder)}])  # fmt: skip


class SchemaTests(SynchronousTestCase):
    def test_the_schema_is_a_package_resource(self) -> None:
        resource = resources.files("dpmd.spec") / "schema" / "dpspec.schema.json"
        self.assertTrue(resource.is_file())
        self.assertEqual(resource.read_bytes(), SCHEMA_PATH.read_bytes())

    def test_spec_schema_prints_the_packaged_schema(self) -> None:
        status, out, err = main_output(self, "spec", "schema")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, SCHEMA_PATH.read_text(encoding="utf-8"))
        self.assertEqual(json.loads(out)["title"], "Data Product Specification")

    def test_spec_alone_is_a_usage_error(self) -> None:
        status, out, err = main_output(self, "spec")
        self.assertEqual((status, out), (2, ""))
        self.assertIn("usage: dpmctl spec", err)


class AgainstTheServerTests(DpmctlCase):
    @inlineCallbacks
    def test_what_spec_new_prints_passes_the_dry_run(self) -> Any:
        dcs = write_fits(str(self.sources / "dcs.fits"), [("INSTRUME", "TEST")],
                         extensions=[image_hdu("CHIP1"), image_hdu("CHIP2")])  # fmt: skip
        fcs = write_fits(str(self.sources / "my fcs.fits"), [("HIERARCH ESO INS MODE", "IMG")],
                         extensions=[table_hdu("EVENTS")])  # fmt: skip
        receiver = self.service.config.dataroot / "olas"  # where receivers may be by default
        receiver.mkdir()
        status, out, err = yield self.dpmctl("spec", "new", dcs, fcs, "--receiver", str(receiver),
                                             "--id", "SPEC.1")  # fmt: skip
        self.assertEqual((status, err), (0, ""))
        status, checked, err = yield self.dpmctl("--json", "check", "-", stdin=out)
        answer = json.loads(checked)
        self.assertEqual((status, err, answer["problems"]), (0, "", []))
        self.assertTrue(answer["ok"])
        self.assertEqual([(hdu["name"], hdu["source"]) for hdu in answer["hdus"]],
                         [("PRIMARY", "(new)"), ("CHIP1", "dcs"), ("CHIP2", "dcs"),
                          ("EVENTS", "my_fcs")])  # fmt: skip
        origin = {entry["keyword"]: entry["source"] for entry in answer["header"]}
        self.assertEqual(origin["INSTRUME"], "dcs")
        self.assertEqual(origin["HIERARCH ESO INS MODE"], "my_fcs")
        self.assertEqual(origin["HISTORY"], "keywords")


class ProcessTests(TestCase):
    """The console script as a child process: what a shell sees."""

    @inlineCallbacks
    def test_the_real_command_reports_a_missing_file_without_a_traceback(self) -> Any:
        gone = Path(self.mktemp()).absolute() / "gone.fits"
        out, err, status = yield dpmctl("spec", "new", str(gone))
        self.assertEqual((status, out), (2, b""))
        self.assertEqual(err.decode(), f"dpmctl: {gone}: no such file\n")

    @inlineCallbacks
    def test_the_real_command_prints_the_schema(self) -> Any:
        out, err, status = yield dpmctl("spec", "schema")
        self.assertEqual((status, err), (0, b""))
        self.assertEqual(out, SCHEMA_PATH.read_bytes())
