"""``dpmd.fitscheck``: size, BLAKE2b and FITS checksums, checked against astropy and b2sum."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy
from astropy.io import fits
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from dpmd.fitscheck import CHUNK, FitsFormatError, describe_fits

COMMENT = "a comment whose bits are flipped"


def write_sources(path: Path, checksum: bool = True) -> Path:
    """A primary image, a binary table and an image extension, as astropy writes them."""
    primary = fits.PrimaryHDU(numpy.arange(100, dtype=">i4").reshape(10, 10))
    primary.header["OBJECT"] = ("NGC 1365", COMMENT)
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name="COUNTS", format="J", array=numpy.arange(7))], name="EVENTS"
    )
    image = fits.ImageHDU(numpy.linspace(0, 1, 300 * 400).reshape(300, 400), name="CHIP1")
    fits.HDUList([primary, table, image]).writeto(path, checksum=checksum)
    return path


def flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def astropy_verdicts(path: Path) -> list[tuple[Any, Any, bool | None, bool | None]]:
    """(CHECKSUM, DATASUM, checksum verifies, datasum verifies) of each HDU, by astropy.

    ``verify_checksum`` and ``verify_datasum`` answer 1 (valid), 0 (invalid)
    or 2 (no such keyword).
    """
    verdict = {0: False, 1: True, 2: None}
    with fits.open(path, checksum=False) as hdus:
        return [
            (
                hdu.header.get("CHECKSUM"),
                hdu.header.get("DATASUM"),
                verdict[hdu.verify_checksum()],
                verdict[hdu.verify_datasum()],
            )
            for hdu in hdus
        ]


def ours(path: Path) -> list[tuple[Any, Any, bool | None, bool | None]]:
    return [
        (hdu["checksum"], hdu["datasum"], hdu["checksum_ok"], hdu["datasum_ok"])
        for hdu in describe_fits(path)["hdus"]
    ]


class DescribeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.path = write_sources(self.directory / "product.fits")

    def test_the_values_a_manifest_records(self) -> None:
        described = describe_fits(self.path)
        data = self.path.read_bytes()
        self.assertEqual(described["size"], len(data))
        self.assertEqual(described["blake2b"], hashlib.blake2b(data).hexdigest())
        self.assertEqual([hdu["index"] for hdu in described["hdus"]], [0, 1, 2])
        self.assertEqual(ours(self.path), astropy_verdicts(self.path))
        self.assertTrue(all(hdu["checksum_ok"] and hdu["datasum_ok"] for hdu in described["hdus"]))

    def test_the_digest_is_that_of_b2sum(self) -> None:
        b2sum = shutil.which("b2sum")
        if b2sum is None:
            raise SkipTest("coreutils' b2sum is not installed")
        output = subprocess.run([b2sum, str(self.path)], capture_output=True, check=True).stdout
        self.assertEqual(describe_fits(self.path)["blake2b"], output.split()[0].decode())

    def test_a_flipped_bit_in_the_data(self) -> None:
        with fits.open(self.path) as hdus:
            offset = hdus[2].fileinfo()["datLoc"] + 1000
        flip_bit(self.path, offset)
        verdicts = ours(self.path)
        self.assertEqual(verdicts, astropy_verdicts(self.path))
        self.assertEqual([v[2:] for v in verdicts], [(True, True), (True, True), (False, False)])

    def test_a_flipped_bit_in_a_header(self) -> None:
        flip_bit(self.path, self.path.read_bytes().index(COMMENT.encode()))
        verdicts = ours(self.path)
        self.assertEqual(verdicts, astropy_verdicts(self.path))
        self.assertEqual(verdicts[0][2:], (False, True))  # the data is as it was
        self.assertEqual([v[2:] for v in verdicts[1:]], [(True, True), (True, True)])

    def test_a_file_without_checksums(self) -> None:
        path = write_sources(self.directory / "plain.fits", checksum=False)
        self.assertEqual(ours(path), [(None, None, None, None)] * 3)
        self.assertEqual(ours(path), astropy_verdicts(path))

    def test_a_wrong_datasum_value(self) -> None:
        with fits.open(self.path, mode="update", checksum=False) as hdus:
            hdus[1].header["DATASUM"] = "12"
        self.assertEqual(ours(self.path)[1][1:4], ("12", False, False))

    def test_not_fits_truncated_or_missing(self) -> None:
        text = self.directory / "notes.txt"
        text.write_text("not FITS\n" * 400)
        self.assertRaises(FitsFormatError, describe_fits, text)
        truncated = self.directory / "truncated.fits"
        truncated.write_bytes(self.path.read_bytes()[:-2880])
        error = self.assertRaises(FitsFormatError, describe_fits, truncated)
        self.assertIn("truncated", str(error))
        self.assertRaises(FileNotFoundError, describe_fits, self.directory / "none.fits")

    def test_memory_stays_flat_for_a_large_file(self) -> None:
        """A 24 MiB image is read through one buffer: the peak is a few chunks, not the file."""
        path = self.directory / "large.fits"
        data = numpy.ones((3 * 1024, 1024), dtype=">f8")
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data)]).writeto(path, checksum=True)
        del data
        tracemalloc.start()
        try:
            described = describe_fits(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertEqual(ours(path), astropy_verdicts(path))
        self.assertGreater(described["size"], 24 * CHUNK)
        self.assertLess(peak, 4 * CHUNK)


class CommandLineTests(SynchronousTestCase):
    def test_json_lines_and_exit_status(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        path = write_sources(directory / "product.fits")
        missing = directory / "none.fits"
        child = subprocess.run(
            [sys.executable, "-m", "dpmd.fitscheck", str(path), str(missing)],
            capture_output=True,
            check=False,
        )
        self.assertEqual(child.returncode, 1)
        first, second = (json.loads(line) for line in child.stdout.splitlines())
        self.assertEqual(first, {"path": str(path), **describe_fits(path)})
        self.assertEqual(second, {"path": str(missing), "error": "No such file or directory"})
