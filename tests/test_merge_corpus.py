"""The merger on FITS files nobody on the project wrote: astropy's own test data.

Every `astropy/io/fits/tests/data/*.fits` of the installed astropy is merged
twice: as the only source of a new product, and as an in-place target (a
copy of it is updated). Each product must

* add nothing to what HEASARC's fitsverify finds in the file itself (per HDU,
  card and byte positions aside): no new error, no new warning;
* hold every extension byte for byte (offsets found by CFITSIO);
* be read by CFITSIO (fitsio): every header, and every HDU's data wherever
  CFITSIO can read that HDU of the source;
* have a primary HDU whose checksums astropy verifies, wherever astropy can
  open the file.

All merges run in this process and fitsverify runs once for all sources and
once for all products, so the whole corpus takes a few seconds. There is one
test per file and mode, so a failure names the file.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import warnings
from dataclasses import dataclass

from astropy.io import fits
from astropy.io.fits import tests as astropy_fits_tests
from twisted.trial.unittest import SynchronousTestCase

from .fitscheck import (
    Verification,
    cfitsio_reads,
    extension_bytes,
    fitsverify,
    require_fitsverify,
)
from .fitsfactory import run_merge, write_spec

CORPUS = sorted(
    glob.glob(os.path.join(os.path.dirname(astropy_fits_tests.__file__), "data", "*.fits"))
)
DATE = "2024-02-01T12:00:00"
MODES = ("source", "target")


@dataclass(frozen=True)
class Merged:
    """One merge of a corpus file and what the independent checkers said."""

    name: str
    mode: str
    source: str
    product: str
    code: int
    lines: tuple[dict, ...]
    source_report: Verification
    product_report: Verification | None


def _merge(directory: str, source: str, mode: str) -> tuple[str, int, list[dict]]:
    name = os.path.basename(source)
    work = os.path.join(directory, mode, name)
    os.makedirs(work)
    if mode == "source":
        document = {
            "id": "CORPUS",
            "target": {"fileId": "PRODUCT"},
            "sources": [{"type": "fitsFile", "sourceName": "file", "location": source}],
        }
        product = os.path.join(work, "PRODUCT.fits")
    else:
        product = shutil.copy(source, os.path.join(work, name))
        document = {
            "id": "CORPUS",
            "sources": [],
            "target": {
                "fileId": "PRODUCT",
                "source": {"type": "fitsFile", "sourceName": "file", "location": product},
            },
        }
    spec = write_spec(os.path.join(work, "spec.json"), document)
    code, lines = run_merge(
        ["--date", DATE, "-o", product, spec] if mode == "source" else ["--date", DATE, spec]
    )
    return product, code, lines


@functools.cache
def corpus_results() -> dict[tuple[str, str], Merged]:
    """Merge every corpus file in both modes, then verify all of them at once."""
    directory = os.path.abspath("corpus-merges")
    shutil.rmtree(directory, ignore_errors=True)
    merges = {
        (os.path.basename(source), mode): (source, *_merge(directory, source, mode))
        for source in CORPUS
        for mode in MODES
    }
    sources = fitsverify(CORPUS)
    written = [product for _, product, code, _ in merges.values() if code == 0]
    products = fitsverify(written) if written else {}
    return {
        key: Merged(
            key[0],
            key[1],
            source,
            product,
            code,
            tuple(lines),
            sources[source],
            products.get(product),
        )
        for key, (source, product, code, lines) in merges.items()
    }


def _astropy_primary(path: str) -> tuple[int, int] | None:
    """astropy's checksum verdicts (1 = valid) for the primary HDU, or None if it cannot read it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with fits.open(path, lazy_load_hdus=True, checksum=False) as hdus:
                return hdus[0].verify_checksum(), hdus[0].verify_datasum()
        except Exception:
            return None


class CorpusTests(SynchronousTestCase):
    """Generated below: test_<file>_as_<mode> for every corpus file and mode."""

    def check(self, name: str, mode: str) -> None:
        require_fitsverify()
        merged = corpus_results()[(name, mode)]
        errors = [line for line in merged.lines if line["type"] == "error"]
        self.assertEqual(merged.code, 0, errors)
        assert merged.product_report is not None
        self.assertEqual(
            merged.product_report.added_to(merged.source_report),
            {},
            f"fitsverify on the product:\n{merged.product_report.text}",
        )
        self.assertEqual(extension_bytes(merged.product), extension_bytes(merged.source))
        product_reads = cfitsio_reads(merged.product)
        self.assertTrue(all(header for header, _ in product_reads), product_reads)
        try:
            source_reads = cfitsio_reads(merged.source)
        except OSError:
            source_reads = []  # CFITSIO cannot open the source; the product it can
        for number, ((_, source_data), (_, product_data)) in enumerate(
            zip(source_reads, product_reads, strict=False)
        ):
            if number or mode == "target":
                self.assertEqual(product_data, source_data, f"CFITSIO reading HDU {number}")
        self.assertTrue(product_reads[0][1], "CFITSIO reading the primary HDU")
        self.assertEqual(_astropy_primary(merged.product), (1, 1))
        if mode == "target":
            self.assertEqual(_primary_data(merged.product), _primary_data(merged.source))


def _primary_data(path: str) -> bytes:
    import fitsio

    try:
        with fitsio.FITS(path) as hdus:
            offsets = hdus[0].get_offsets()
    except OSError:
        return b""
    with open(path, "rb") as stream:
        stream.seek(offsets["data_start"])
        return stream.read(offsets["data_end"] - offsets["data_start"])


def _add_tests() -> None:
    for path in CORPUS:
        name = os.path.basename(path)
        stem = name[: -len(".fits")].replace("-", "_").replace(".", "_")
        for mode in MODES:

            def test(self: CorpusTests, name: str = name, mode: str = mode) -> None:
                self.check(name, mode)

            setattr(CorpusTests, f"test_{stem}_as_{mode}", test)


_add_tests()


class CorpusPresentTests(SynchronousTestCase):
    def test_corpus_is_installed(self) -> None:
        """The corpus test must never pass by finding no file."""
        self.assertGreaterEqual(len(CORPUS), 30, CORPUS)
