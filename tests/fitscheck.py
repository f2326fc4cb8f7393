"""Independent checks of FITS files: HEASARC's fitsverify and CFITSIO (through fitsio).

Neither shares code with the merger, so a product they accept is valid FITS
whoever wrote its sources. fitsverify runs once for many files (one child
process), and its findings are compared per HDU with those of the source, so
that a product is only blamed for what it adds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from twisted.trial.unittest import SkipTest

FITSVERIFY = shutil.which("fitsverify")
_MISSING = (
    "fitsverify (HEASARC's FITS verifier, Debian package 'fitsverify') is not installed; "
    ".ci/run installs it"
)
_HDU = re.compile(r"=+ HDU (\d+): ")
_MESSAGE = re.compile(r"\*\*\* (Warning|Error): +(.*)")
#: Numbers that change when a file is rebuilt (card and byte positions) are not compared.
_POSITIONS = re.compile(r"(#|byte |card )\d+")


def require_fitsverify() -> str:
    if FITSVERIFY is None:
        raise SkipTest(_MISSING)
    return FITSVERIFY


@dataclass
class Verification:
    """fitsverify's findings for one file: messages by HDU number (1 = primary)."""

    path: str
    fatal: bool = False
    hdus: dict[int, Counter[str]] = field(default_factory=dict)
    text: str = ""

    def added_to(self, source: Verification) -> dict[int, list[str]]:
        """Messages of this file that the same HDU of `source` does not have."""
        added = {}
        for number, messages in self.hdus.items():
            extra = messages - source.hdus.get(number, Counter())
            if extra:
                added[number] = sorted(extra.elements())
        if self.fatal and not source.fatal:
            added[0] = ["fatal error"]
        return added


def fitsverify(paths: Sequence[str]) -> dict[str, Verification]:
    """Run fitsverify once over all `paths`; its report for each, by path."""
    program = require_fitsverify()
    result = subprocess.run(  # errors go to stderr, interleaved with stdout in one pipe
        [program, *paths],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=120,
    )
    found: dict[str, tuple[Verification, list[tuple[int, list[str]]]]] = {}
    messages: list[tuple[int, list[str]]] = []
    current: Verification | None = None
    hdu, message = 0, None
    for line in result.stdout.splitlines():
        if line.startswith("File: "):
            current, messages = Verification(line[6:].strip()), []
            found[os.path.abspath(current.path)] = (current, messages)
            hdu, message = 0, None
        elif current is None:
            continue
        elif heading := _HDU.match(line):
            hdu, message = int(heading.group(1)), None
        elif start := _MESSAGE.match(line):
            message = [f"{start.group(1)}: {start.group(2).strip()}"]
            messages.append((hdu, message))
        elif message is not None and line.startswith("             ") and line.strip():
            message.append(line.strip())  # a message continued on the next line
        else:
            message = None
        if current is not None:
            current.text += line + "\n"
            current.fatal = current.fatal or "Abort Verification" in line
    missing = [path for path in paths if os.path.abspath(path) not in found]
    if missing:
        raise AssertionError(f"fitsverify reported nothing for {missing}: {result.stdout}")
    reports = {}
    for path in paths:
        report, entries = found[os.path.abspath(path)]
        for number, parts in entries:
            report.hdus.setdefault(number, Counter())[_normal(" ".join(parts))] += 1
        reports[path] = report
    return reports


def _normal(message: str) -> str:
    return _POSITIONS.sub(lambda match: match.group(1) + "N", message)


def extension_bytes(path: str) -> list[bytes]:
    """The bytes of every extension (header and padded data), by CFITSIO's offsets."""
    import fitsio

    try:
        with fitsio.FITS(path) as hdus:
            offsets = [hdu.get_offsets() for hdu in hdus]
    except OSError:
        return []  # CFITSIO cannot open it at all: compared as having no extensions
    with open(path, "rb") as stream:
        blobs = []
        for offset in offsets[1:]:
            stream.seek(offset["header_start"])
            blobs.append(stream.read(offset["data_end"] - offset["header_start"]))
        return blobs


def cfitsio_reads(path: str) -> list[tuple[bool, bool]]:
    """For each HDU: whether CFITSIO reads its header, and whether it reads its data."""
    import fitsio

    results = []
    with fitsio.FITS(path) as hdus:
        for hdu in hdus:
            results.append((_succeeds(hdu.read_header), _succeeds(hdu.read)))
    return results


def _succeeds(call: object) -> bool:
    try:
        call()  # type: ignore[operator]
    except Exception:
        return False
    return True
