"""Small FITS files from plain Python: an empty primary HDU, images, binary tables.

``dpmctl demo`` needs source files to merge, and astropy (with numpy, some
60 MiB) is too much to install for that.  The records are rendered by
``dpmd.spec.cards`` and the headers, with their ``CHECKSUM``/``DATASUM``,
assembled by the merger's own ``dpmd.merge.header``, so the demo's files are
written by the same code that writes products; the tests read them back with
astropy as an independent check.
"""

from __future__ import annotations

import array
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dpmd.durable import write_durably
from dpmd.merge import checksum
from dpmd.merge.header import Placed, build_header, header_bytes
from dpmd.spec.cards import BLOCK, Card, KeywordKind, render_keyword

Value = str | bool | int | float
Keyword = tuple[str, Value, str]
"""``(name, value, comment)``; a name starting with ``HIERARCH ESO `` is an ESO keyword."""

_PACK = {"D": "d", "E": "f", "J": "i", "K": "q", "A": "s"}
"""Binary table codes of the columns this writer supports, as ``struct`` codes."""


def _card(name: str, value: Value, comment: str = "") -> Card:
    if name.startswith("HIERARCH ESO "):
        return render_keyword(KeywordKind.ESO, name.removeprefix("HIERARCH ESO "), value, comment)
    return render_keyword(KeywordKind.VALUE, name, value, comment or None)


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def hdu_bytes(structure: Sequence[Keyword], keywords: Sequence[Keyword], data: bytes) -> bytes:
    """One HDU: header (structure, keywords, ``CHECKSUM``, ``DATASUM``) and padded data."""
    data = _padded(data)
    cards = [Placed(_card(*keyword), "demo") for keyword in (*structure, *keywords)]
    header = build_header(cards, [], [])
    return header_bytes(header.final_records(checksum.sum32(data))) + data


@dataclass(frozen=True)
class Column:
    """A binary table column: ``format`` is ``D``, ``E``, ``J``, ``K`` or ``<n>A``."""

    name: str
    format: str
    values: Sequence[float | int | str]
    unit: str = ""

    @property
    def code(self) -> str:
        count, letter = self.format[:-1] or "1", self.format[-1]
        if letter not in _PACK or not count.isdigit():
            raise ValueError(f"column {self.name}: unsupported format {self.format!r}")
        return f"{count}{_PACK[letter]}" if letter == "A" else _PACK[letter]


def primary_hdu(keywords: Sequence[Keyword]) -> bytes:
    """An empty primary HDU (``NAXIS = 0``) that announces extensions."""
    structure: list[Keyword] = [
        ("SIMPLE", True, "conforms to FITS standard"),
        ("BITPIX", 8, "array data type"),
        ("NAXIS", 0, "number of array dimensions"),
        ("EXTEND", True, "FITS dataset may contain extensions"),
    ]
    return hdu_bytes(structure, keywords, b"")


def image_hdu(
    name: str, width: int, height: int, pixels: Sequence[float], keywords: Sequence[Keyword]
) -> bytes:
    """A 32-bit float image extension, ``pixels`` row after row."""
    if len(pixels) != width * height:
        raise ValueError(f"image {name}: {len(pixels)} pixels for {width} x {height}")
    values = array.array("f", pixels)
    if sys.byteorder == "little":
        values.byteswap()  # FITS is big-endian
    structure: list[Keyword] = [
        ("XTENSION", "IMAGE", "Image extension"),
        ("BITPIX", -32, "array data type"),
        ("NAXIS", 2, "number of array dimensions"),
        ("NAXIS1", width, ""),
        ("NAXIS2", height, ""),
        ("PCOUNT", 0, "number of parameters"),
        ("GCOUNT", 1, "number of groups"),
        ("EXTNAME", name, "extension name"),
    ]
    return hdu_bytes(structure, keywords, values.tobytes())


def table_hdu(name: str, columns: Sequence[Column], keywords: Sequence[Keyword]) -> bytes:
    """A binary table extension; every column must have the same number of rows."""
    rows = {len(column.values) for column in columns}
    if len(rows) != 1:
        raise ValueError(f"table {name}: columns of different lengths")
    layout = struct.Struct(">" + "".join(column.code for column in columns))
    data = b"".join(
        layout.pack(*(_cell(column, row) for column in columns)) for row in range(rows.pop())
    )
    structure: list[Keyword] = [
        ("XTENSION", "BINTABLE", "binary table extension"),
        ("BITPIX", 8, "array data type"),
        ("NAXIS", 2, "number of array dimensions"),
        ("NAXIS1", layout.size, "length of dimension 1"),
        ("NAXIS2", len(data) // layout.size if layout.size else 0, "length of dimension 2"),
        ("PCOUNT", 0, "number of group parameters"),
        ("GCOUNT", 1, "number of groups"),
        ("TFIELDS", len(columns), "number of table fields"),
    ]
    for number, column in enumerate(columns, 1):
        structure += [(f"TTYPE{number}", column.name, ""), (f"TFORM{number}", column.format, "")]
        if column.unit:
            structure.append((f"TUNIT{number}", column.unit, ""))
    structure.append(("EXTNAME", name, "extension name"))
    return hdu_bytes(structure, keywords, data)


def _cell(column: Column, row: int) -> float | int | bytes:
    value = column.values[row]
    return value.encode("ascii") if isinstance(value, str) else value


def write_fits(path: Path, hdus: Sequence[bytes]) -> None:
    """Write the HDUs as one file, replacing any file of that name whole."""
    write_durably(path, b"".join(hdus))
