"""What a release manifest records of a FITS file, computed from the file alone.

``describe_fits(path)`` gives the file's size, its BLAKE2b-512 (the digest of
``python -m dpmd.digest`` and coreutils' ``b2sum``) and, for each HDU, its
``CHECKSUM`` and ``DATASUM`` keywords with whether they verify.  An archive
can so check a delivery independently of dpmd, and the server can record the
same values (``dpmctl checksum`` prints them; the server may call the
function in a child process, or run ``python -m dpmd.fitscheck FILE…``, which
prints one JSON line per file).

Why one pass: a product can be many gigabytes.  The HDUs are found from
their headers first (``dpmd.merge.fitsio.scan`` reads headers only), then the
file is read once, sequentially, in chunks of a fixed size; each chunk feeds
the digest and the ones'-complement sums (``dpmd.merge.checksum``, the
merger's own code) of the header or data it covers.  Memory stays flat
whatever the file's size.

Verification follows the FITS checksum convention: ``DATASUM`` is the
decimal sum of the data records (padding included), and an HDU whose
``CHECKSUM`` is right sums, header and data together, to negative zero
(all ones).  An absent keyword gives ``None`` for the value and for its
verdict.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from dpmd.merge import checksum
from dpmd.merge.fitsio import FitsFormatError, FitsLayout, keyword_value, read_header, scan

CHUNK = 1 << 20
"""Bytes read at a time: a multiple of 4, so every slice of a chunk sums whole words."""
NEGATIVE_ZERO = 0xFFFFFFFF
"""The ones'-complement sum of an HDU whose CHECKSUM is right."""

__all__ = ["FitsFormatError", "describe_fits", "main"]


def keyword_text(records: Sequence[str], name: str) -> str | None:
    """The value of the first ``name`` card, a string decoded, trimmed; ``None`` when absent."""
    value = keyword_value(records, name)
    return None if value is None else value.strip()


def _segments(layout: FitsLayout) -> list[tuple[int, int, int, bool]]:
    """(start, end, HDU index, is data) of every header and data span, in file order."""
    segments = []
    for hdu in layout.hdus:
        segments.append((hdu.header_offset, hdu.data_offset, hdu.index, False))
        segments.append((hdu.data_offset, hdu.end, hdu.index, True))
    return segments


def _fill(handle: io.RawIOBase, buffer: bytearray) -> int:
    """Read until the buffer is full or the file ends, so chunks start at multiples of CHUNK."""
    view = memoryview(buffer)
    done = 0
    while done < len(buffer):
        count = handle.readinto(view[done:])
        if not count:
            break
        done += count
    return done


def _datasum_ok(text: str | None, computed: int) -> bool | None:
    if text is None:
        return None
    try:
        return int(text) == computed
    except ValueError:
        return False


def describe_fits(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"size", "blake2b", "hdus": [{"index", "checksum", "datasum", "checksum_ok",
    "datasum_ok"}]}`` of a FITS file (blocking: it reads the whole file once).

    Raises ``FitsFormatError`` (a ``ValueError``) for a file that is not FITS
    or is truncated, or that changed while it was read, and ``OSError`` when
    it cannot be read.
    """
    name = os.fspath(path)
    layout = scan(name)
    hasher = hashlib.blake2b()
    header_sums = [0] * len(layout.hdus)
    data_sums = [0] * len(layout.hdus)
    with open(name, "rb", buffering=0) as handle:
        fd = handle.fileno()
        headers = [list(layout.primary_records)]
        headers += [read_header(fd, hdu.header_offset, layout.size)[0] for hdu in layout.extensions]
        segments = _segments(layout)
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        position, size, first = 0, 0, 0
        while count := _fill(handle, buffer):
            hasher.update(view[:count])
            end = position + count
            while first < len(segments) and segments[first][1] <= position:
                first += 1
            for start, stop, index, is_data in segments[first:]:
                if start >= end:
                    break
                low, high = max(start, position), min(stop, end)
                total = checksum.sum32(view[low - position : high - position])
                sums = data_sums if is_data else header_sums
                sums[index] = checksum.add(sums[index], total)
            position = end
            size += count
    if size != layout.size:
        raise FitsFormatError(f"{name} changed while it was read ({layout.size} → {size} bytes)")
    hdus = []
    for index, records in enumerate(headers):
        checksum_text = keyword_text(records, "CHECKSUM")
        datasum_text = keyword_text(records, "DATASUM")
        whole = checksum.add(header_sums[index], data_sums[index])
        hdus.append(
            {
                "index": index,
                "checksum": checksum_text,
                "datasum": datasum_text,
                "checksum_ok": None if checksum_text is None else whole == NEGATIVE_ZERO,
                "datasum_ok": _datasum_ok(datasum_text, data_sums[index]),
            }
        )
    return {"size": size, "blake2b": hasher.hexdigest(), "hdus": hdus}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dpmd.fitscheck FILE…``: one JSON line per file, ``{"path", …}`` or
    ``{"path", "error"}``; exit status 0 when every file could be described, else 1."""
    paths = sys.argv[1:] if argv is None else list(argv)
    if not paths:
        print("usage: python -m dpmd.fitscheck FILE...", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        line: dict[str, Any]
        try:
            line = {"path": path, **describe_fits(path)}
        except OSError as error:
            line, status = {"path": path, "error": error.strerror or str(error)}, 1
        except FitsFormatError as error:
            line, status = {"path": path, "error": f"not a FITS file: {error}"}, 1
        print(json.dumps(line), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
