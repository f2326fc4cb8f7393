"""What is in a FITS file, read from its headers only: HDUs, shapes, keyword values.

``dpmctl demo`` shows the product it made.  The merger's own reader
(``dpmd.merge.fitsio``) walks the HDUs and ``dpmd.spec.cards`` parses the
records, so no data is read and astropy is not needed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dpmd.merge.fitsio import read_header, scan
from dpmd.spec.cards import KeywordKind, cards_from_records, string_value

HDU_TYPES = {
    None: "PrimaryHDU",
    "IMAGE": "ImageHDU",
    "BINTABLE": "BinTableHDU",
    "TABLE": "TableHDU",
}
"""The names astropy gives these HDU types, which FITS users know."""


@dataclass(frozen=True)
class HduInfo:
    """One HDU of a product, as ``dpmctl`` lists it."""

    index: int
    name: str
    type: str
    shape: list[int] | None
    """Axis lengths slowest first (``NAXIS2, NAXIS1``), as numpy and astropy give them."""
    rows: int | None
    """For a table, its number of rows."""

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "type": self.type,
            "shape": self.shape,
            "rows": self.rows,
        }


def decode_value(text: str | None) -> Any:
    """A FITS value text as Python: strings, ``T``/``F``, integers, reals; else the text."""
    if text is None:
        return None
    decoded = string_value(text)
    if decoded is not None:
        return decoded
    if text in ("T", "F"):
        return text == "T"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text.replace("D", "E").replace("d", "e"))
    except ValueError:
        return text


def keyword_values(records: Iterable[str]) -> dict[str, Any]:
    """Value keywords by their full name (``HIERARCH ESO DET DIT``); the first one wins."""
    values: dict[str, Any] = {}
    for card in cards_from_records(records):
        if card.kind is KeywordKind.COMMENTARY:
            continue
        name = f"HIERARCH ESO {card.name}" if card.kind is KeywordKind.ESO else card.name
        values.setdefault(name, decode_value(card.value))
    return values


def _hdu_info(index: int, values: dict[str, Any], xtension: str | None) -> HduInfo:
    axes = [int(values.get(f"NAXIS{n}", 0)) for n in range(1, int(values.get("NAXIS", 0)) + 1)]
    table = xtension in ("BINTABLE", "TABLE")
    name = values.get("EXTNAME") or ("PRIMARY" if index == 0 else "")
    return HduInfo(
        index=index,
        name=str(name),
        type=HDU_TYPES.get(xtension, str(xtension)),
        shape=None if table or not axes else list(reversed(axes)),
        rows=axes[1] if table and len(axes) > 1 else None,
    )


def describe(path: str) -> tuple[list[HduInfo], dict[str, Any]]:
    """Every HDU of the file, and the value keywords of its primary header.

    Raises ``dpmd.merge.fitsio.FitsFormatError`` for a file that is not FITS
    and ``OSError`` when it cannot be read.
    """
    layout = scan(path)
    primary = keyword_values(layout.primary_records)
    hdus = [_hdu_info(0, primary, None)]
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        for hdu in layout.extensions:
            records, _ = read_header(stream.fileno(), hdu.header_offset, size)
            hdus.append(_hdu_info(hdu.index, keyword_values(records), hdu.xtension))
    return hdus, primary
