"""The client's FITS writer and header reader, checked both ways against astropy."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy
from astropy.io import fits
from twisted.trial.unittest import SynchronousTestCase

from dpmd.client.fitsinfo import HduInfo, decode_value, describe
from dpmd.client.fitswriter import Column, image_hdu, primary_hdu, table_hdu, write_fits


def strictly_opened(path: Path) -> fits.HDUList:
    """Open with checksums verified and every astropy warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hdus = fits.open(path, checksum=True)
        hdus.verify("exception")
        for hdu in hdus:
            hdu.data  # noqa: B018 (reading the data checks its size and DATASUM)
    return hdus


class WriterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp())

    def test_astropy_reads_every_hdu_and_verifies_its_checksums(self) -> None:
        pixels = [float(n % 97) - 40.5 for n in range(6 * 4)]
        write_fits(
            self.path,
            [
                primary_hdu(
                    [
                        ("OBJECT", "NGC 1365", "target"),
                        ("EXPTIME", 10.0, "[s]"),
                        ("HIERARCH ESO DET NDIT", 3, "integrations"),
                        ("HIERARCH ESO INS MODE", "IMAGING", ""),
                        ("SIMPLEST", False, ""),
                    ]
                ),
                image_hdu("SCI", 6, 4, pixels, [("BUNIT", "adu", "Pixel unit")]),
                table_hdu(
                    "EVENTS",
                    [
                        Column("TIME", "D", [0.0, 1.5, 3.0], unit="s"),
                        Column("NAME", "6A", ["ab", "cdef", ""]),
                        Column("FLUX", "E", [1.25, -2.5, 3.0], unit="Jy"),
                        Column("COUNT", "J", [1, -2, 3]),
                        Column("BIG", "K", [2**40, 0, -(2**40)]),
                    ],
                    [("ORIGIN", "dpmd", "")],
                ),
            ],
        )
        with strictly_opened(self.path) as hdus:
            self.assertEqual([hdu.name for hdu in hdus], ["PRIMARY", "SCI", "EVENTS"])
            header = hdus[0].header
            self.assertIsNone(hdus[0].data)
            self.assertEqual(header["OBJECT"], "NGC 1365")
            self.assertEqual(header["HIERARCH ESO DET NDIT"], 3)
            self.assertEqual(header["HIERARCH ESO INS MODE"], "IMAGING")
            self.assertIs(header["SIMPLEST"], False)
            self.assertTrue(header["EXTEND"])
            image = hdus[1].data
            self.assertEqual((image.shape, image.dtype), ((4, 6), numpy.dtype(">f4")))
            self.assertEqual(image.ravel().tolist(), pixels)
            table = hdus[2].data
            self.assertEqual(hdus[2].columns.names, ["TIME", "NAME", "FLUX", "COUNT", "BIG"])
            self.assertEqual(hdus[2].columns["TIME"].unit, "s")
            self.assertEqual(table["NAME"].tolist(), ["ab", "cdef", ""])
            self.assertEqual(table["FLUX"].tolist(), [1.25, -2.5, 3.0])
            self.assertEqual(table["BIG"].tolist(), [2**40, 0, -(2**40)])
            self.assertEqual(hdus[2].header["ORIGIN"], "dpmd")

    def test_the_check_sees_a_changed_byte(self) -> None:
        write_fits(self.path, [primary_hdu([]), image_hdu("SCI", 2, 2, [1.0, 2.0, 3.0, 4.0], [])])
        strictly_opened(self.path).close()
        data = bytearray(self.path.read_bytes())
        data[2 * 2880 + 1] ^= 0x10  # a bit of the first pixel
        self.path.write_bytes(bytes(data))
        self.assertRaises(Warning, strictly_opened, self.path)

    def test_rewriting_replaces_the_file(self) -> None:
        write_fits(self.path, [primary_hdu([("OBJECT", "first", "")])])
        write_fits(self.path, [primary_hdu([("OBJECT", "second", "")])])
        with strictly_opened(self.path) as hdus:
            self.assertEqual(hdus[0].header["OBJECT"], "second")
        self.assertEqual(self.path.stat().st_size, 2880)

    def test_bad_input_is_refused_with_its_name(self) -> None:
        error = self.assertRaises(ValueError, image_hdu, "SCI", 3, 3, [1.0], [])
        self.assertIn("image SCI: 1 pixels for 3 x 3", str(error))
        columns = [Column("A", "D", [1.0]), Column("B", "D", [1.0, 2.0])]
        error = self.assertRaises(ValueError, table_hdu, "T", columns, [])
        self.assertIn("table T: columns of different lengths", str(error))
        error = self.assertRaises(ValueError, table_hdu, "T", [Column("C", "Q", [1])], [])
        self.assertIn("column C: unsupported format 'Q'", str(error))
        self.assertRaises(ValueError, primary_hdu, [("lower", 1, "")])


class ReaderTests(SynchronousTestCase):
    def test_describes_a_file_astropy_wrote(self) -> None:
        path = Path(self.mktemp())
        primary = fits.PrimaryHDU()
        primary.header["OBJECT"] = "M 31"
        primary.header["HIERARCH ESO DET DIT"] = 2.5
        primary.header["FLAG"] = True
        table = fits.BinTableHDU.from_columns(
            [fits.Column("X", "E", array=numpy.arange(7.0))], name="TAB"
        )
        unnamed = fits.ImageHDU(numpy.zeros((3, 5, 2), dtype=numpy.int16))
        fits.HDUList([primary, table, unnamed]).writeto(path)
        hdus, keywords = describe(str(path))
        self.assertEqual(
            hdus,
            [
                HduInfo(0, "PRIMARY", "PrimaryHDU", None, None),
                HduInfo(1, "TAB", "BinTableHDU", None, 7),
                HduInfo(2, "", "ImageHDU", [3, 5, 2], None),
            ],
        )
        self.assertEqual(keywords["OBJECT"], "M 31")
        self.assertEqual(keywords["HIERARCH ESO DET DIT"], 2.5)
        self.assertIs(keywords["FLAG"], True)

    def test_values(self) -> None:
        self.assertEqual(decode_value("'It''s  '"), "It's")
        self.assertEqual(decode_value("1.5D3"), 1500.0)
        self.assertEqual(decode_value("-7"), -7)
        self.assertEqual(decode_value("(1, 2)"), "(1, 2)")
        self.assertIsNone(decode_value(None))
