"""Whole merges, run in this process, with products read back by astropy."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil

import numpy
from astropy.io import fits
from twisted.trial.unittest import SynchronousTestCase

from dpmd.merge.__main__ import main

from .fitsfactory import (
    example,
    header_keys,
    image,
    image_hdu,
    open_verified,
    primary_header_blocks,
    run_merge,
    table_hdu,
    write_fits,
    write_spec,
)

DATE = "2024-02-01T12:00:00"


def raw_hdus(path: str) -> list[bytes]:
    """The bytes of every extension HDU (header and padded data), via astropy offsets."""
    with fits.open(path) as hdus, open(path, "rb") as stream:
        blobs = []
        for index in range(1, len(hdus)):
            info = hdus.fileinfo(index)
            stream.seek(info["hdrLoc"])
            blobs.append(stream.read(info["datLoc"] + info["datSpan"] - info["hdrLoc"]))
        return blobs


def of_type(lines: list[dict], kind: str) -> list[dict]:
    return [line for line in lines if line["type"] == kind]


class NewFileTests(SynchronousTestCase):
    """The new-file example of the reference, with local relative locations."""

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        self.dcs = write_fits(
            os.path.join(self.root, "dcs", "dcs_0001.fits"),
            [
                ("ORIGIN", "ESO-DCS", "where"),
                ("OBJECT", "dcs object"),
                ("HIERARCH ESO DET DIT", 1.5, "[s] integration"),
                ("HIERARCH ESO INS FILT1 ID", "R"),
                ("DATE", "2020-01-01"),
                ("COMMENT", "from dcs"),
            ],
            extensions=[image_hdu("DET1", seed=1), image_hdu("DET2", seed=2)],
        )
        self.fcs = write_fits(
            os.path.join(self.root, "fcs", "fcs_0001.fits"),
            [
                ("HIERARCH ESO INS FILT1 ID", "B"),
                ("HIERARCH ESO INS TEMP1 VAL", 3.0),
                ("VALUEKW", 1),
            ],
            data=image((4, 4)),
            extensions=[table_hdu("FCS")],
        )
        self.tcs = write_fits(
            os.path.join(self.root, "tcs", "tcs_0001.fits"),
            [("HIERARCH ESO TEL AIRM START", 1.2), ("TCSONLY", 5)],
            extensions=[image_hdu("TCS", seed=3)],
        )
        self.document = example("dp-spec-new-file-local.json")
        self.spec = write_spec(os.path.join(self.root, "spec.json"), self.document)
        self.product = os.path.join(self.root, "INSTR.2024-02-01T10:00:00.000.fits")

    def merge(self, *args: str) -> list[dict]:
        code, lines = run_merge(["--date", DATE, *args, self.spec])
        self.assertEqual(code, 0, lines)
        return lines

    def test_primary_header(self) -> None:
        lines = self.merge()
        [result] = of_type(lines, "result")
        self.assertIsInstance(result.pop("peak_rss_bytes"), int)  # this process's ru_maxrss
        self.assertEqual(
            result, {"type": "result", "path": self.product, "size": os.path.getsize(self.product)}
        )
        self.assertEqual(
            header_keys(self.product),
            [
                "SIMPLE",
                "BITPIX",
                "NAXIS",
                "EXTEND",
                "ARCFILE",
                "ORIGFILE",
                "DATE",
                "OBJECT",
                "RA",
                "DEC",
                "ORIGIN",
                "ESO OBS TPLNO",
                "ESO INS FILT1 ID",
                "ESO INS TEMP1 VAL",
                "ESO DET DIT",
                "HISTORY",
                "COMMENT",
                "CHECKSUM",
                "DATASUM",
            ],
        )
        with open_verified(self.product) as hdus:
            header = hdus[0].header
            self.assertEqual(header["OBJECT"], "OBJECT,SKY")  # ocm outranks dcs
            self.assertEqual(header["RA"], 53.087446)
            self.assertEqual(header.comments["RA"], "[deg] 03:32:20.9 RA (J2000) pointing")
            self.assertEqual(header["ORIGIN"], "ESO-DCS")
            self.assertEqual(header.comments["ORIGIN"], "where")
            self.assertEqual(header["HIERARCH ESO INS FILT1 ID"], "R")  # dcs outranks fcs
            self.assertEqual(header["HIERARCH ESO OBS TPLNO"], 2)
            self.assertEqual(header.comments["HIERARCH ESO DET DIT"], "[s] integration")
            self.assertEqual(header["ARCFILE"], "INSTR.2024-02-01T10:00:00.000.fits")
            self.assertEqual(header["ORIGFILE"], "INSTR.2024-02-01T10:00:00.000.fits")
            self.assertEqual(header["DATE"], "2024-02-01T12:00:00.000")  # not the source's
            self.assertEqual(header["DATASUM"], "0")
            self.assertEqual(list(header["HISTORY"]), ["Merged by the data product manager"])
            self.assertEqual(list(header["COMMENT"]), ["from dcs"])
            self.assertNotIn("VALUEKW", header)  # fcs filter keeps INS keywords only
            self.assertNotIn("TCSONLY", header)  # tcs has keywordRules []
            self.assertNotIn("HIERARCH ESO TEL AIRM START", header)

    def test_extensions_appended_byte_for_byte(self) -> None:
        sources = {}
        for path in (self.dcs, self.fcs, self.tcs):
            with open(path, "rb") as stream:
                sources[path] = stream.read()
        self.merge()
        for path, content in sources.items():  # sources are never modified
            with open(path, "rb") as stream:
                self.assertEqual(stream.read(), content)
        self.assertEqual(
            raw_hdus(self.product), raw_hdus(self.dcs) + raw_hdus(self.fcs) + raw_hdus(self.tcs)
        )
        with open_verified(self.product) as hdus:
            self.assertEqual([hdu.name for hdu in hdus], ["PRIMARY", "DET1", "DET2", "FCS", "TCS"])
            numpy.testing.assert_array_equal(hdus["DET2"].data, image((16, 12), 2))
            self.assertEqual(list(hdus["FCS"].data["ID"]), [0, 1, 2, 3, 4])

    def test_unmerged_data_alert(self) -> None:
        alerts = of_type(self.merge(), "alert")
        self.assertEqual(len(alerts), 1)
        self.assertEqual(
            {k: alerts[0][k] for k in ("category", "key", "severity")},
            {"category": "UnmergedData", "key": "fcs", "severity": "Warning"},
        )
        self.assertIn("fcs", alerts[0]["description"])

    def test_unmerged_data_alert_disabled(self) -> None:
        self.document["sources"][2]["alertUnmergeable"] = False
        write_spec(self.spec, self.document)
        self.assertEqual(of_type(self.merge(), "alert"), [])

    def test_reproducible_with_pinned_date(self) -> None:
        first, second = (os.path.join(self.root, name) for name in ("a.fits", "b.fits"))
        self.merge("-o", first)
        self.merge("-o", second)
        with open(first, "rb") as one, open(second, "rb") as two:
            self.assertEqual(one.read(), two.read())

    def test_default_date_is_now_in_utc(self) -> None:
        code, _ = run_merge([self.spec])
        self.assertEqual(code, 0)
        with fits.open(self.product) as hdus:
            self.assertRegex(hdus[0].header["DATE"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$")

    def test_progress_lines(self) -> None:
        """Bytes written, then a `sync` line announcing the final fsync, then the result."""
        lines = self.merge()
        *progress, sync = of_type(lines, "progress")
        size = os.path.getsize(self.product)
        self.assertTrue(progress)
        self.assertTrue(
            all(
                p["stage"] == "write" and p["unit"] == "bytes" and p["total"] == size
                for p in progress
            )
        )
        done = [p["done"] for p in progress]
        self.assertEqual(done, sorted(done))
        self.assertEqual(done[-1], size)
        self.assertEqual(
            sync, {"type": "progress", "stage": "sync", "done": 0, "total": size, "unit": "bytes"}
        )
        self.assertEqual(lines[-1]["type"], "result")

    def test_file_prefix(self) -> None:
        self.document["target"]["filePrefix"] = "instr_"
        write_spec(self.spec, self.document)
        self.merge()
        product = os.path.join(self.root, "instr_INSTR.2024-02-01T10:00:00.000.fits")
        with open_verified(product) as hdus:
            self.assertEqual(hdus[0].header["ORIGFILE"], os.path.basename(product))
            self.assertEqual(hdus[0].header["ARCFILE"], "INSTR.2024-02-01T10:00:00.000.fits")

    def test_dry_run_writes_nothing(self) -> None:
        before = sorted(os.listdir(self.root))
        lines = self.merge("--dry-run")
        self.assertEqual(sorted(os.listdir(self.root)), before)
        (plan,) = of_type(lines, "plan")
        self.assertEqual(plan["mode"], "new-file")
        self.assertEqual(plan["path"], self.product)
        self.assertIn("HIERARCH ESO INS FILT1 ID = 'R       '", plan["header"])
        self.assertEqual(
            [(h["origin"], h["extname"]) for h in plan["hdus"]],
            [("(new)", None), ("dcs", "DET1"), ("dcs", "DET2"), ("fcs", "FCS"), ("tcs", "TCS")],
        )
        self.assertEqual(of_type(lines, "alert")[0]["category"], "UnmergedData")
        self.merge()
        self.assertEqual(plan["size"], os.path.getsize(self.product))

    def test_dry_run_for_humans(self) -> None:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(main(["--dry-run", "--log-level", "error", self.spec]), 0)
        text = out.getvalue()
        self.assertIn("Mode:     new-file", text)
        self.assertIn("  ORIGIN  = 'ESO-DCS '           / where", text)
        self.assertRegex(text, r"\n\s+4 IMAGE +'TCS' from tcs: header 2880 bytes, data 384")
        self.assertFalse(os.path.exists(self.product))

    def test_root_and_resolve(self) -> None:
        elsewhere = os.path.abspath(self.mktemp())
        os.makedirs(elsewhere)
        spec = write_spec(os.path.join(elsewhere, "spec.json"), self.document)
        moved = os.path.join(elsewhere, "moved-tcs.fits")
        shutil.copy(self.tcs, moved)
        resolve = os.path.join(elsewhere, "resolve.json")
        with open(resolve, "w") as stream:
            json.dump({"tcs": moved}, stream)
        code, lines = run_merge(["--root", self.root, "--resolve", resolve, spec])
        self.assertEqual(code, 0, lines)
        self.assertEqual(of_type(lines, "result")[0]["path"], self.product)
        with open_verified(self.product) as hdus:
            self.assertEqual(hdus[-1].name, "TCS")

    def test_keywords_in_all_forms(self) -> None:
        text = " ".join(f"word{n}" for n in range(40))
        self.document["sources"][0]["keywords"] += [
            {"type": "valueKeyword", "name": "LONGSTR", "value": text, "comment": "long"},
            {"type": "esoKeyword", "name": "INS LONG TEXT", "value": text},
            {"type": "valueKeyword", "name": "FLAG", "value": False},
            {"type": "valueKeyword", "name": "BIG", "value": 2**62},
            {"type": "literalKeyword", "value": "HIERARCH ESO DPR CATG = 'SCIENCE' / category"},
            {"type": "literalKeyword", "value": "        blank-name commentary"},
        ]
        self.document["sources"][0]["keywordRules"] = [
            {"type": "filter", "selectionPatterns": ["+vec *", "-v RA", "-v DEC"]}
        ]
        write_spec(self.spec, self.document)
        self.merge()
        with open_verified(self.product) as hdus:
            header = hdus[0].header
            self.assertEqual(header["LONGSTR"], text)
            self.assertEqual(header.comments["LONGSTR"], "long")
            self.assertEqual(header["HIERARCH ESO INS LONG TEXT"], text)
            self.assertIs(header["FLAG"], False)
            self.assertEqual(header["BIG"], 2**62)
            self.assertEqual(header["HIERARCH ESO DPR CATG"], "SCIENCE")
            self.assertNotIn("RA", header)
            keys = header_keys(self.product)
            self.assertEqual(keys.index("ESO DPR CATG"), keys.index("ESO OBS TPLNO") - 1)
            self.assertEqual(list(header[""]), ["blank-name commentary"])


class InPlaceTests(SynchronousTestCase):
    """The in-place example of the reference, merged via --resolve."""

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        self.data = image((20, 30), 5, "i2")
        self.target = self.write_target(reserve=40)
        self.fcs = write_fits(
            os.path.join(self.root, "fcs.fits"),
            [
                ("VALUEKW", 7),
                ("HIERARCH ESO INS FILT1 ID", "B"),
                ("HIERARCH ESO INS TEMP1 VAL", 3.0),
                ("HIERARCH ESO INS TEMP3 VAL", 4.0),
                ("HIERARCH ESO DET DIT", 9.0),
                ("COMMENT", "from fcs"),
            ],
            extensions=[table_hdu("FCS")],
        )
        self.document = example("dp-spec-inplace-full.json")
        self.spec = write_spec(os.path.join(self.root, "spec.json"), self.document)
        self.resolve = os.path.join(self.root, "resolve.json")
        with open(self.resolve, "w") as stream:
            json.dump({"dcs": "dcs.fits", "fcs": self.fcs}, stream)

    def write_target(self, reserve: int, extra: int = 0, name: str = "dcs.fits") -> str:
        cards = [
            ("ORIGIN", "ESO-DCS"),
            ("DCSONLY", "kept"),
            ("BUNIT", "adu"),
            ("HIERARCH ESO DET DIT", 1.5),
            ("COMMENT", "from dcs"),
        ]
        cards += [(f"PAD{n}", n) for n in range(extra)]
        return write_fits(
            os.path.join(self.root, name),
            cards,
            data=self.data,
            extensions=[image_hdu("DET1", seed=1)],
            reserve=reserve,
        )

    def merge(self, *args: str) -> list[dict]:
        code, lines = run_merge(["--date", DATE, "--resolve", self.resolve, *args, self.spec])
        self.assertEqual(code, 0, lines)
        return lines

    def test_header_fits_in_place(self) -> None:
        inode, blocks = os.stat(self.target).st_ino, primary_header_blocks(self.target)
        fcs_bytes = raw_hdus(self.fcs)
        own_bytes = raw_hdus(self.target)
        lines = self.merge()
        self.assertEqual(of_type(lines, "alert"), [])
        self.assertEqual(of_type(lines, "result")[0]["path"], self.target)
        self.assertEqual(os.stat(self.target).st_ino, inode)
        self.assertEqual(primary_header_blocks(self.target), blocks)
        self.assertEqual(raw_hdus(self.target), own_bytes + fcs_bytes)
        self.assertFalse([n for n in os.listdir(self.root) if n.startswith(".")])
        with open_verified(self.target) as hdus:
            header = hdus[0].header
            numpy.testing.assert_array_equal(hdus[0].data, self.data)
            self.assertEqual([hdu.name for hdu in hdus], ["PRIMARY", "DET1", "FCS"])
            self.assertEqual(header["ORIGIN"], "ESO-PARANAL")  # ocm overrides the base
            self.assertEqual(header["DCSONLY"], "kept")
            self.assertEqual(header["HIERARCH ESO DET DIT"], 1.5)  # base kept: fcs filtered
            self.assertEqual(header["HIERARCH ESO INS2 FILT1 ID"], "B")
            self.assertNotIn("HIERARCH ESO INS2 TEMP1 VAL", header)
            self.assertEqual(header["VALUEKW"], 7)
            self.assertEqual(
                list(header["COMMENT"]), ["from dcs", "Example of a commentary keyword."]
            )
            self.assertNotEqual(header["DATASUM"], "0")
        keys = header_keys(self.target)
        self.assertEqual(keys[:6], ["SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND"])
        self.assertEqual(keys[6:12], ["ARCFILE", "ORIGFILE", "DATE", "ORIGIN", "DCSONLY", "BUNIT"])

    def test_header_grows(self) -> None:
        os.chmod(self.target, 0o640)
        self.target = self.write_target(reserve=0, extra=20)
        os.chmod(self.target, 0o640)
        inode, blocks = os.stat(self.target).st_ino, primary_header_blocks(self.target)
        self.assertEqual(blocks, 1)
        own_bytes = raw_hdus(self.target)
        lines = self.merge()
        (alert,) = of_type(lines, "alert")
        self.assertEqual(
            (alert["category"], alert["key"], alert["severity"]),
            ("PrimaryHduResized", "dcs", "Info"),
        )
        self.assertNotEqual(os.stat(self.target).st_ino, inode)
        self.assertEqual(os.stat(self.target).st_mode & 0o777, 0o640)
        self.assertGreater(primary_header_blocks(self.target), blocks)
        self.assertEqual(raw_hdus(self.target), own_bytes + raw_hdus(self.fcs))
        self.assertEqual(
            sorted(os.listdir(self.root)), ["dcs.fits", "fcs.fits", "resolve.json", "spec.json"]
        )
        with open_verified(self.target) as hdus:
            numpy.testing.assert_array_equal(hdus[0].data, self.data)
            self.assertEqual(hdus[0].header["PAD19"], 19)

    def test_output_option_leaves_target_alone(self) -> None:
        with open(self.target, "rb") as stream:
            original = stream.read()
        out = os.path.join(self.root, "product.fits")
        lines = self.merge("-o", out)
        self.assertEqual(of_type(lines, "result")[0]["path"], out)
        with open(self.target, "rb") as stream:
            self.assertEqual(stream.read(), original)
        self.merge()  # now in place: the same product
        with open(self.target, "rb") as one, open(out, "rb") as two:
            self.assertEqual(one.read(), two.read())

    def test_output_option_still_reports_resize(self) -> None:
        self.target = self.write_target(reserve=0, extra=20)
        with open(self.target, "rb") as stream:
            original = stream.read()
        lines = self.merge("-o", os.path.join(self.root, "product.fits"))
        self.assertEqual([a["category"] for a in of_type(lines, "alert")], ["PrimaryHduResized"])
        with open(self.target, "rb") as stream:
            self.assertEqual(stream.read(), original)

    def test_target_rules(self) -> None:
        self.document["target"]["source"]["keywordRules"] = [
            {"type": "filter", "selectionPatterns": ["+v DCSONLY"]}
        ]
        write_spec(self.spec, self.document)
        self.merge()
        with open_verified(self.target) as hdus:
            header = hdus[0].header
            self.assertEqual(header["DCSONLY"], "kept")
            self.assertNotIn("BUNIT", header)
            self.assertNotIn("HIERARCH ESO DET DIT", header)
            self.assertEqual(header["NAXIS2"], 20)
            self.assertEqual(list(header["COMMENT"]), ["Example of a commentary keyword."])

    def test_scaled_target_keeps_its_structure(self) -> None:
        data = numpy.arange(600, dtype="u2").reshape(20, 30) + 60000
        write_fits(self.target, [("ORIGIN", "x")], data=data, reserve=40)
        self.merge()
        with open_verified(self.target) as hdus:
            self.assertEqual(hdus[0].header["BZERO"], 32768)
            numpy.testing.assert_array_equal(hdus[0].data, data)

    def test_dates_written_by_the_merger(self) -> None:
        self.merge("--date", "2024-02-01T13:00:00+01:00")
        with fits.open(self.target) as hdus:
            self.assertEqual(hdus[0].header["DATE"], "2024-02-01T12:00:00.000")
            self.assertTrue(re.match(r"TEST\.", hdus[0].header["ARCFILE"]))
