"""Build source FITS files for merge tests, with astropy (never with the code under test)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence

import numpy
from astropy.io import fits

from dpmd.workers import child_environment

Card = tuple[str, object] | tuple[str, object, str]


def image(shape: Sequence[int], seed: int = 0, dtype: str = "i2") -> numpy.ndarray:
    """A deterministic, non-trivial array (so copies can be compared)."""
    rng = numpy.random.default_rng(seed)
    return rng.integers(-1000, 1000, size=tuple(shape)).astype(dtype)


def image_hdu(name: str, shape: Sequence[int] = (16, 12), seed: int = 0) -> fits.ImageHDU:
    return fits.ImageHDU(image(shape, seed), name=name)


def table_hdu(name: str, rows: int = 5) -> fits.BinTableHDU:
    columns = [
        fits.Column(name="ID", format="J", array=numpy.arange(rows)),
        fits.Column(name="FLUX", format="E", array=numpy.linspace(0, 1, rows)),
    ]
    return fits.BinTableHDU.from_columns(columns, name=name)


def write_fits(
    path: str,
    cards: Iterable[Card] = (),
    data: numpy.ndarray | None = None,
    extensions: Iterable[fits.hdu.base.ExtensionHDU] = (),
    reserve: int = 0,
    checksum: bool = True,
) -> str:
    """Write a FITS file: primary header cards (HIERARCH names allowed), optional
    primary data, extensions, and `reserve` blank records of spare header space."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    primary = fits.PrimaryHDU(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        for card in cards:
            keyword, *rest = card
            if keyword in ("COMMENT", "HISTORY"):
                primary.header.add_comment(
                    rest[0]
                ) if keyword == "COMMENT" else primary.header.add_history(rest[0])
            else:
                primary.header.append((keyword, *rest))
        for _ in range(reserve):
            primary.header.append(fits.Card(), bottom=True)
        fits.HDUList([primary, *extensions]).writeto(path, checksum=checksum, overwrite=True)
    return path


def write_raw_source(
    path: str, extension_bytes: int, extensions: int = 1, name: str = "RAW"
) -> str:
    """A file with big uint8 image extensions, written in blocks (no big arrays in memory)."""
    block = numpy.random.default_rng(7).integers(0, 255, 1 << 20, dtype=numpy.uint8).tobytes()
    with open(path, "wb") as stream:
        stream.write(fits.PrimaryHDU().header.tostring().encode())
        for number in range(extensions):
            header = fits.ImageHDU(name=f"{name}{number}").header
            header["BITPIX"] = 8
            header["NAXIS"] = 1
            header.insert("NAXIS", ("NAXIS1", extension_bytes), after=True)
            stream.write(header.tostring().encode())
            left = extension_bytes
            while left:
                chunk = block[: min(left, len(block))]
                stream.write(chunk)
                left -= len(chunk)
            stream.write(b"\0" * (-extension_bytes % 2880))
    return path


def write_spec(path: str, spec: dict) -> str:
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(spec, stream, indent=2)
    return path


def primary_header_blocks(path: str) -> int:
    """Number of 2880-byte blocks of the primary header, read with astropy."""
    with fits.open(path) as hdus:
        info = hdus.fileinfo(0)
        return (info["datLoc"] - info["hdrLoc"]) // 2880


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = os.path.join(REPO, "tests", "data", "specs")


def example(name: str) -> dict:
    """A specification example copied from the reference (tests/data/specs)."""
    with open(os.path.join(SPECS, name), encoding="utf-8") as stream:
        return json.load(stream)


def run_cli(args: Sequence[str], timeout: float = 60, **kwargs):
    """Run the merger as a real child process; returns the CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "dpmd.merge", *args],
        capture_output=True,
        text=True,
        env=child_environment(),
        timeout=timeout,
        **kwargs,
    )


def run_merge(args: Sequence[str]) -> tuple[int, list[dict]]:
    """Run the merger in this process with --json; returns (exit code, JSON lines)."""
    import contextlib
    import io
    import logging

    from dpmd.merge.__main__ import main

    out = io.StringIO()
    logger = logging.getLogger("dpmd.merge")
    level = logger.level
    try:
        with contextlib.redirect_stdout(out):
            code = main(["--json", "--log-level", "error", *args])
    finally:
        logger.setLevel(level)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def header_keys(path: str) -> list[str]:
    """Keywords of the primary header in order (blank records left out)."""
    with fits.open(path) as hdus:
        return [card.keyword for card in hdus[0].header.cards if card.keyword]


def open_verified(path: str) -> fits.HDUList:
    """Open with checksum verification; any astropy warning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hdus = fits.open(path, checksum=True)
        for hdu in hdus:
            if hdu.verify_checksum() != 1 or hdu.verify_datasum() != 1:
                raise AssertionError(f"checksum of HDU {hdu.name} does not verify")
        return hdus


def header_file(path: str, records: Sequence[str]) -> str:
    """A FITS file whose primary header holds `records` (after SIMPLE/BITPIX/NAXIS)."""
    from dpmd.spec.cards import header_bytes

    mandatory = [
        f"{name:<8}= {value:>20}".ljust(80)
        for name, value in (("SIMPLE", "T"), ("BITPIX", "8"), ("NAXIS", "0"))
    ]
    with open(path, "wb") as stream:
        stream.write(header_bytes([*mandatory, *records]))
    return path


def cfitsio_header(path: str, records: Sequence[str]):
    """The header as CFITSIO reads it (through fitsio), from a file holding `records`."""
    import fitsio

    return fitsio.read_header(header_file(path, records))
