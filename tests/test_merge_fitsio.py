"""HDU walking, streaming copies and checksums (dpmd.merge.fitsio, dpmd.merge.checksum)."""

from __future__ import annotations

import errno
import io
import os

import numpy
from astropy.io import fits
from twisted.trial.unittest import SynchronousTestCase

from dpmd.merge import checksum, fitsio
from dpmd.merge.errors import SourceError

from .fitsfactory import image, image_hdu, table_hdu, write_fits


class ChecksumTests(SynchronousTestCase):
    def test_matches_astropy(self) -> None:
        for seed in range(8):
            hdu = fits.PrimaryHDU(image((7 + seed, 5), seed, "i4"))
            hdu.header["SEED"] = seed
            buffer = io.BytesIO()
            hdu.writeto(buffer, checksum=True)
            raw = buffer.getvalue()
            header_size = len(raw) - (-(-hdu.data.nbytes // 2880) * 2880)
            datasum = checksum.sum32(raw[header_size:])
            stored = fits.Header.fromstring(raw[:header_size].decode())
            self.assertEqual(str(datasum), stored["DATASUM"])
            zeroed = raw[:header_size].replace(stored["CHECKSUM"].encode(), b"0" * 16)
            self.assertEqual(
                checksum.encode(checksum.add(checksum.sum32(zeroed), datasum)), stored["CHECKSUM"]
            )

    def test_numpy_and_struct_paths_agree(self) -> None:
        data = numpy.random.default_rng(1).integers(0, 256, 1 << 20, dtype=numpy.uint8).tobytes()
        small = 0
        for start in range(0, len(data), 4096):
            small = checksum.add(small, checksum.sum32(data[start : start + 4096]))
        self.assertEqual(checksum.sum32(data), small)

    def test_ones_complement_folding(self) -> None:
        self.assertEqual(checksum.sum32(b"\xff\xff\xff\xff" * 2), 0xFFFFFFFF)
        self.assertEqual(checksum.add(0xFFFFFFFF, 1), 1)
        self.assertRaises(ValueError, checksum.sum32, b"abc")


class ScanTests(SynchronousTestCase):
    def test_offsets_match_astropy(self) -> None:
        path = write_fits(
            os.path.join(self.mktemp(), "a.fits"),
            [("OBJECT", "x")],
            data=image((10, 3)),
            extensions=[image_hdu("A", (100, 50)), table_hdu("T", 7), fits.ImageHDU(name="EMPTY")],
        )
        layout = fitsio.scan(path)
        with fits.open(path) as hdus:
            self.assertEqual(len(layout.hdus), len(hdus))
            for hdu, (index, ours) in zip(hdus, enumerate(layout.hdus), strict=True):
                info = hdus.fileinfo(index)
                self.assertEqual(
                    (ours.header_offset, ours.data_offset, ours.data_span),
                    (info["hdrLoc"], info["datLoc"], info["datSpan"]),
                )
                self.assertEqual(ours.data_size, hdu.size if index else hdu.data.nbytes)
        self.assertEqual(
            [(h.xtension, h.extname) for h in layout.extensions],
            [("IMAGE", "A"), ("BINTABLE", "T"), ("IMAGE", "EMPTY")],
        )
        self.assertEqual(layout.end, os.path.getsize(path))
        self.assertIn("OBJECT  = 'x       '", [r.rstrip() for r in layout.primary_records])

    def test_random_groups_size(self) -> None:
        data = fits.GroupData(
            numpy.zeros((3, 1, 2, 2), "f4"),
            parnames=["P1", "P2"],
            pardata=[numpy.ones(3, "f4"), numpy.ones(3, "f4")],
            bitpix=-32,
        )
        path = os.path.join(self.mktemp(), "g.fits")
        os.makedirs(os.path.dirname(path))
        fits.GroupsHDU(data).writeto(path)
        layout = fitsio.scan(path)
        self.assertEqual(layout.primary.data_size, 3 * (2 + 4) * 4)
        self.assertEqual(layout.end, os.path.getsize(path))

    def test_rejections(self) -> None:
        directory = self.mktemp()
        good = write_fits(os.path.join(directory, "good.fits"), extensions=[image_hdu("A")])
        with open(good, "rb") as stream:
            raw = stream.read()
        cases = {
            "not FITS": b"hello world" * 300,
            "SIMPLE": raw.replace(
                b"SIMPLE  =                    T", b"SIMPLE  =                    F"
            ),
            "truncated": raw[:-2880],
            "no END": raw[:2880].replace(b"END" + b" " * 77, b" " * 80),
            "XTENSION": raw + b"Z" * 2880,
            "not ASCII": b"SIMPLE  = \xff" + raw[11:],
            "BITPIX": raw.replace(
                b"BITPIX  =                    8", b"BITPIX  =                    7"
            ),
        }
        for name, data in cases.items():
            path = os.path.join(directory, f"{name}.fits")
            with open(path, "wb") as stream:
                stream.write(data)
            self.assertRaises(fitsio.FitsFormatError, fitsio.scan, path)
        self.assertRaises(FileNotFoundError, fitsio.scan, os.path.join(directory, "none"))

    def test_trailing_zeros_are_padding(self) -> None:
        """Some writers pad after the last HDU: zero bytes are accepted (and logged)."""
        for padding in (100, 2880, 3 * 2880):
            path = write_fits(os.path.join(self.mktemp(), "a.fits"), extensions=[image_hdu("A")])
            size = os.path.getsize(path)
            with open(path, "ab") as stream:
                stream.write(b"\0" * padding)
            with self.assertLogs("dpmd.merge", "INFO") as logged:
                layout = fitsio.scan(path)
            self.assertEqual((layout.end, len(layout.hdus)), (size, 2))
            self.assertIn(
                f"{padding} zero bytes after the last HDU at byte {size}", logged.output[0]
            )

    def test_other_trailing_bytes_are_refused(self) -> None:
        for garbage in (b"\0" * 2880 + b"x", b"junk", b"Z" * 2880, b" " * 2880):
            path = write_fits(os.path.join(self.mktemp(), "a.fits"), extensions=[image_hdu("A")])
            size = os.path.getsize(path)
            with open(path, "ab") as stream:
                stream.write(garbage)
            with self.assertRaises(fitsio.FitsFormatError) as caught:
                fitsio.scan(path)
            self.assertEqual(
                str(caught.exception),
                f"{len(garbage)} bytes after the last HDU at byte {size} are not a FITS HDU",
            )


class CopyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(fitsio, "CHUNK", 64 * 1024)
        directory = self.mktemp()
        os.makedirs(directory)
        self.data = os.urandom(3 * fitsio.CHUNK + 1234)
        self.src_path = os.path.join(directory, "src")
        with open(self.src_path, "wb") as stream:
            stream.write(self.data)
        self.dst_path = os.path.join(directory, "dst")
        self.src = os.open(self.src_path, os.O_RDONLY)
        self.dst = os.open(self.dst_path, os.O_RDWR | os.O_CREAT, 0o644)
        self.addCleanup(os.close, self.src)
        self.addCleanup(os.close, self.dst)

    def copy(self) -> list[int]:
        steps: list[int] = []
        fitsio.copy_range(self.src, 100, self.dst, 7, len(self.data) - 100, "src", steps.append)
        with open(self.dst_path, "rb") as stream:
            self.assertEqual(stream.read(), b"\0" * 7 + self.data[100:])
        return steps

    def test_kernel_copy_in_chunks(self) -> None:
        steps = self.copy()
        self.assertEqual(sum(steps), len(self.data) - 100)
        self.assertGreater(len(steps), 1)

    def test_fallback_without_kernel_copy(self) -> None:
        def unsupported(*args: object) -> int:
            raise OSError(errno.EXDEV, "cross-device")

        self.patch(os, "copy_file_range", unsupported)
        self.assertEqual(sum(self.copy()), len(self.data) - 100)

    def test_source_shorter_than_announced(self) -> None:
        for kernel in (True, False):
            if not kernel:
                self.patch(
                    os,
                    "copy_file_range",
                    lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSYS, "no")),
                )
            self.assertRaises(
                SourceError,
                fitsio.copy_range,
                self.src,
                0,
                self.dst,
                0,
                len(self.data) + 10,
                "src",
                lambda n: None,
            )

    def test_sum_range_copies_and_sums(self) -> None:
        length = len(self.data) - len(self.data) % 4
        total = fitsio.sum_range(self.src, 0, length, "src", lambda n: None, self.dst, 0)
        self.assertEqual(total, checksum.sum32(self.data[:length]))
        with open(self.dst_path, "rb") as stream:
            self.assertEqual(stream.read(), self.data[:length])
