"""Products that every reader takes as the merger meant them (issue: FITS fidelity).

Whole merges run in this process; products are read back by astropy, by
CFITSIO (fitsio) and, where installed, checked by fitsverify.
"""

from __future__ import annotations

import os
import shutil

import fitsio
from astropy.io import fits
from astropy.io.fits import tests as astropy_fits_tests
from twisted.trial.unittest import SynchronousTestCase

from .fitscheck import FITSVERIFY, extension_bytes, fitsverify
from .fitsfactory import (
    image,
    image_hdu,
    open_verified,
    run_merge,
    table_hdu,
    write_fits,
    write_spec,
)

DATE = "2024-02-01T12:00:00"
ASTROPY_DATA = os.path.join(os.path.dirname(astropy_fits_tests.__file__), "data")
LISTING_3 = {  # the reference's own transform: INS keywords become INS2 keywords
    "type": "transform",
    "selectionPatterns": ["+e INS *"],
    "regex": "^INS ",
    "format": "INS2 ",
}


def file_source(name: str, location: str, **extra: object) -> dict:
    return {"type": "fitsFile", "sourceName": name, "location": location, **extra}


def keywords(*items: dict) -> dict:
    return {"type": "fitsKeywords", "sourceName": "ocm", "keywords": list(items)}


class MergeTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.product = os.path.join(self.root, "P.fits")

    def merge(self, *sources: dict, target: dict | None = None, code: int = 0) -> list[dict]:
        document: dict = {"id": "T", "target": {"fileId": "P"}, "sources": list(sources)}
        if target is not None:
            document["target"]["source"] = target
        spec = write_spec(os.path.join(self.root, "spec.json"), document)
        result, lines = run_merge(["--date", DATE, "-o", self.product, spec])
        self.assertEqual(result, code, lines)
        return lines

    def alerts(self, lines: list[dict]) -> list[dict]:
        return [line for line in lines if line["type"] == "alert"]

    def primary(self) -> fits.Header:
        with open_verified(self.product) as hdus:
            return hdus[0].header.copy()

    def assert_fitsverify_clean(self, source: str | None = None) -> None:
        """fitsverify finds nothing in the product that it does not find in `source`."""
        if FITSVERIFY is None:
            return  # the corpus test says so with a skip; the other checks still run
        reports = fitsverify([self.product] + ([source] if source else []))
        report = reports[self.product]
        if source is None:
            self.assertEqual(dict(report.hdus), {}, report.text)
        else:
            self.assertEqual(report.added_to(reports[source]), {}, report.text)

    def astropy_source(self, name: str) -> str:
        return shutil.copy(os.path.join(ASTROPY_DATA, name), os.path.join(self.root, name))


class DroppedPrimaryDataTests(MergeTestCase):
    """Keywords describing a source's primary array do not follow the keywords it merges."""

    def test_random_groups_keywords_left_out(self) -> None:
        for name in ("group.fits", "random_groups.fits"):
            lines = self.merge(file_source("rg", self.astropy_source(name)))
            header = self.primary()
            left = [k for k in header if k[:5] in ("PTYPE", "PSCAL", "PZERO", "CRPIX", "CTYPE")]
            self.assertEqual(left, [], name)
            self.assertNotIn("GROUPS", header)
            (alert,) = self.alerts(lines)
            self.assertIn("keywords describing that data are left out: ", alert["description"])
            self.assertIn("PTYPE1", alert["description"])
            self.assert_fitsverify_clean(os.path.join(ASTROPY_DATA, name))

    def test_wcs_and_scaling_keywords_left_out_and_named(self) -> None:
        source = write_fits(
            os.path.join(self.root, "img.fits"),
            [
                ("OBJECT", "M31"),
                ("BUNIT", "adu"),
                ("DATAMIN", -3),
                ("WCSAXES", 2),
                ("CRPIX1", 1.0),
                ("CRVAL1", 10.0),
                ("CTYPE1", "RA---TAN"),
                ("CDELT2", 0.1),
                ("CUNIT2", "deg"),
                ("PC1_2", 0.0),
                ("CD2_1A", 0.0),
                ("EQUINOX", 2000.0),
                ("RA", 10.0),
            ],
            data=image((4, 4)),
            extensions=[table_hdu("T")],
        )
        lines = self.merge(file_source("img", source))
        header = self.primary()
        self.assertEqual(
            [k for k in ("OBJECT", "EQUINOX", "RA") if k in header], ["OBJECT", "EQUINOX", "RA"]
        )
        for name in (
            "BUNIT",
            "DATAMIN",
            "WCSAXES",
            "CRPIX1",
            "CRVAL1",
            "CTYPE1",
            "CDELT2",
            "CUNIT2",
            "PC1_2",
            "CD2_1A",
        ):
            self.assertNotIn(name, header)
        (alert,) = self.alerts(lines)
        self.assertEqual(
            (alert["category"], alert["key"], alert["severity"]), ("UnmergedData", "img", "Warning")
        )
        self.assertTrue(
            alert["description"].endswith(
                "keywords describing that data are left out: BUNIT, DATAMIN, WCSAXES, CRPIX1, "
                "CRVAL1, CTYPE1, CDELT2, CUNIT2, PC1_2, CD2_1A"
            ),
            alert["description"],
        )
        self.assert_fitsverify_clean()

    def test_astropy_image_sources(self) -> None:
        for name in ("scale.fits", "checksum.fits", "fixed-1890.fits"):
            self.merge(file_source("img", self.astropy_source(name)))
            self.assertFalse(
                [k for k in self.primary() if k.startswith(("CRPIX", "CRVAL", "CTYPE"))]
            )
            self.assert_fitsverify_clean()

    def test_a_rule_brings_one_back_by_name(self) -> None:
        source = write_fits(
            os.path.join(self.root, "img.fits"),
            [("OBJECT", "M31"), ("BUNIT", "adu"), ("CRPIX1", 1.0)],
            data=image((4, 4)),
        )
        rules = [{"type": "filter", "selectionPatterns": ["+v *", "+v BUNIT"]}]
        lines = self.merge(file_source("img", source, keywordRules=rules))
        header = self.primary()
        self.assertEqual(
            (header["BUNIT"], "CRPIX1" in header, header["OBJECT"]), ("adu", False, "M31")
        )
        (alert,) = self.alerts(lines)
        self.assertTrue(alert["description"].endswith("left out: CRPIX1"), alert)

    def test_filtered_out_anyway_is_not_named(self) -> None:
        source = write_fits(
            os.path.join(self.root, "img.fits"), [("CRPIX1", 1.0)], data=image((4, 4))
        )
        rules = [{"type": "filter", "selectionPatterns": ["+e *"]}]
        (alert,) = self.alerts(self.merge(file_source("img", source, keywordRules=rules)))
        self.assertNotIn("left out", alert["description"])

    def test_in_place_target_keeps_its_own(self) -> None:
        target = write_fits(
            os.path.join(self.root, "target.fits"),
            [("BUNIT", "adu"), ("CRPIX1", 2.0), ("CTYPE1", "RA---TAN")],
            data=image((4, 4)),
        )
        lines = self.merge(target=file_source("dcs", target))
        header = self.primary()
        self.assertEqual((header["BUNIT"], header["CRPIX1"]), ("adu", 2.0))
        self.assertEqual(self.alerts(lines), [])
        self.assert_fitsverify_clean(target)

    def test_alert_disabled_still_drops(self) -> None:
        source = write_fits(
            os.path.join(self.root, "img.fits"), [("CRPIX1", 1.0)], data=image((4, 4))
        )
        lines = self.merge(file_source("img", source, alertUnmergeable=False))
        self.assertEqual(self.alerts(lines), [])
        self.assertNotIn("CRPIX1", self.primary())


class LengtheningRenameTests(MergeTestCase):
    """A rename that makes a record longer continues it, or leaves the keyword out."""

    def test_listing_3_rename_of_a_full_string_record(self) -> None:
        value = "N" * 49  # astropy writes "HIERARCH ESO INS FILT1 NAME= '...'": 80 characters
        source = write_fits(
            os.path.join(self.root, "fcs.fits"), [("HIERARCH ESO INS FILT1 NAME", value)]
        )
        with open(source, "rb") as stream:
            self.assertIn(f"HIERARCH ESO INS FILT1 NAME= '{value}'".encode(), stream.read(2880))
        lines = self.merge(file_source("fcs", source, keywordRules=[LISTING_3]))
        self.assertEqual(self.alerts(lines), [])
        header = self.primary()
        self.assertEqual(header["HIERARCH ESO INS2 FILT1 NAME"], value)
        self.assertEqual(fitsio.read_header(self.product)["ESO INS2 FILT1 NAME"], value)
        self.assertEqual(header["LONGSTRN"], "OGIP 1.0")
        self.assert_fitsverify_clean()

    def test_rename_of_a_continued_string(self) -> None:
        value = "a long filter description " * 6
        source = write_fits(
            os.path.join(self.root, "fcs.fits"), [("HIERARCH ESO INS FILT1 DESC", value, "c")]
        )
        self.merge(file_source("fcs", source, keywordRules=[LISTING_3]))
        self.assertEqual(self.primary()["HIERARCH ESO INS2 FILT1 DESC"], value.rstrip())
        self.assertEqual(fitsio.read_header(self.product)["ESO INS2 FILT1 DESC"], value.rstrip())

    def test_a_number_drops_its_comment(self) -> None:
        name = "INS " + "X" * 50
        source = write_fits(
            os.path.join(self.root, "fcs.fits"), [(f"HIERARCH ESO {name}", 12345, "a comment")]
        )
        self.merge(file_source("fcs", source, keywordRules=[LISTING_3]))
        header = self.primary()
        self.assertEqual(header[f"HIERARCH ESO INS2 {name[4:]}"], 12345)

    def test_nothing_fits_is_a_warning_and_the_merge_goes_on(self) -> None:
        name = "INS " + "Y" * 56  # 'HIERARCH ESO ' + 60 + ' = ' + 5 = 81 once renamed
        source = write_fits(
            os.path.join(self.root, "fcs.fits"),
            [(f"HIERARCH ESO {name}", 12345), ("HIERARCH ESO INS OK", 1)],
            extensions=[image_hdu("E")],
        )
        lines = self.merge(file_source("fcs", source, keywordRules=[LISTING_3]))
        (alert,) = self.alerts(lines)
        self.assertEqual(
            (alert["category"], alert["key"], alert["severity"]), ("UnmergedData", "fcs", "Warning")
        )
        self.assertTrue(
            alert["description"].startswith(
                f"source 'fcs': keyword {name!r} renamed to 'INS2 {name[4:]}' "
                "by keywordRules[0] is left out: "
            ),
            alert,
        )
        header = self.primary()
        self.assertEqual(header["HIERARCH ESO INS2 OK"], 1)
        self.assertNotIn(f"HIERARCH ESO INS2 {name[4:]}", header)
        self.assertEqual(extension_bytes(self.product), extension_bytes(source))


class LongStringTests(MergeTestCase):
    def test_long_string_ending_with_ampersand(self) -> None:
        value = "a" * 100 + "&"
        self.merge(keywords({"type": "valueKeyword", "name": "AMPLONG", "value": value}))
        self.assertEqual(self.primary()["AMPLONG"], value)
        self.assertEqual(fitsio.read_header(self.product)["AMPLONG"], value)
        self.assert_fitsverify_clean()

    def test_longstrn_exactly_when_continue_is_used(self) -> None:
        short = write_fits(
            os.path.join(self.root, "s.fits"), [("LONGSTRN", "OGIP 1.0"), ("OBJECT", "x")]
        )
        self.merge(file_source("s", short))
        self.assertNotIn("LONGSTRN", self.primary())
        self.merge(
            file_source("s", short),
            keywords({"type": "valueKeyword", "name": "LONG", "value": "x" * 90}),
        )
        header = self.primary()
        self.assertEqual(list(header).index("LONGSTRN"), list(header).index("DATE") + 1)
        self.assertEqual(list(header).count("LONGSTRN"), 1)
        self.assertEqual(header["LONGSTRN"], "OGIP 1.0")
        self.assert_fitsverify_clean()


class SubnormalTests(MergeTestCase):
    def test_subnormal_real_refused(self) -> None:
        lines = self.merge(
            keywords({"type": "valueKeyword", "name": "TINY", "value": 5e-324}), code=3
        )
        self.assertIn("$.sources[0].keywords[0]: real 5e-324 is subnormal", lines[-1]["message"])


class TrailingBytesTests(MergeTestCase):
    """Zero blocks after the last HDU are padding; anything else is refused."""

    def padded(self, name: str, padding: bytes, **kwargs: object) -> str:
        path = write_fits(os.path.join(self.root, name), [("OBJECT", name)], **kwargs)
        with open(path, "ab") as stream:
            stream.write(padding)
        return path

    def test_padded_source(self) -> None:
        source = self.padded("s.fits", b"\0" * 2880, extensions=[image_hdu("E")])
        self.merge(file_source("s", source))
        self.assertEqual(self.primary()["OBJECT"], "s.fits")
        self.assertEqual(len(extension_bytes(self.product)), 1)
        self.assert_fitsverify_clean()

    def test_padded_in_place_target(self) -> None:
        target = self.padded("t.fits", b"\0" * 5760, data=image((4, 4)))
        other = write_fits(os.path.join(self.root, "o.fits"), extensions=[image_hdu("O")])
        self.merge(file_source("o", other), target=file_source("t", target))
        with open_verified(self.product) as hdus:
            self.assertEqual([hdu.name for hdu in hdus], ["PRIMARY", "O"])
        self.assert_fitsverify_clean()

    def test_other_garbage_refused(self) -> None:
        source = self.padded("s.fits", b"\0" * 2880 + b"garbage")
        size = os.path.getsize(source)
        lines = self.merge(file_source("s", source), code=4)
        self.assertIn(
            f"{2880 + 7} bytes after the last HDU at byte {size - 2887} are not a FITS HDU",
            lines[-1]["message"],
        )
