"""The release manifest: ``{fileId}.fits.json`` beside the product at each receiver.

So that an archive can verify a delivery on its own, dpmd writes beside the
product (before the product appears under its name) what it knows of it:
its size and BLAKE2b-512 checksum (as ``b2sum`` computes it), the FITS
``CHECKSUM`` and ``DATASUM`` of its primary HDU, each source's name,
location, size, modification time and SHA-256 checksum as collected
(``null`` for a DAQ collected by an earlier dpmd) and how many times it was
collected (``collections``, with what each earlier collection found in
``superseded``: a retry collects a broken source again), the checksum of the
specification as received, the dpmd version and the release time.
``dpmctl checksum FILE`` prints the same values for any FITS file.  A receiver
with ``options.manifest: false`` gets none (some ingestions accept only FITS).

The manifest is written under a hidden temporary name and renamed, so a
reader never sees a partial one; a manifest of the same DAQ already there
(an earlier attempt) is replaced, anything else under its name is never
overwritten.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import dpmd
from dpmd.digest import SOURCE_ALGORITHM
from dpmd.durable import write_durably
from dpmd.logs import iso_time
from dpmd.record import DaqRecord
from dpmd.spec.cards import BLOCK

RECORD = 80


def manifest_name(product_name: str) -> str:
    return f"{product_name}.json"


def primary_checksums(product: Path) -> dict[str, str]:
    """``CHECKSUM`` and ``DATASUM`` of the product's primary header (blocking)."""
    found: dict[str, str] = {}
    with open(product, "rb") as handle:
        while block := handle.read(BLOCK):
            for start in range(0, len(block), RECORD):
                record = block[start : start + RECORD].decode("ascii", "replace")
                keyword = record[:8].strip()
                if keyword in ("CHECKSUM", "DATASUM") and record[8:10] == "= ":
                    found[keyword.lower()] = record[10:].split("'")[1].rstrip()
                elif keyword == "END":
                    return found
    return found


def build_manifest(record: DaqRecord, product: Path, name: str, specification: Path,
                   released_at: float) -> bytes:  # fmt: skip
    """The manifest's bytes (blocking: reads the product's header and the specification)."""
    digest = record.product_digest or {}
    document: dict[str, Any] = {
        "daq_id": record.id,
        "product": {"name": name, "size": digest.get("size"), "blake2b": digest.get("blake2b"),
                    **primary_checksums(product)},
        "sources": [{"name": source["name"], "location": source["location"],
                     "size": source["bytes"], "mtime": source["mtime"],
                     SOURCE_ALGORITHM: source.get(SOURCE_ALGORITHM),
                     "collections": int(source.get("collections", 1)),
                     "superseded": [{"size": earlier["bytes"], "mtime": earlier["mtime"],
                                     SOURCE_ALGORITHM: earlier.get(SOURCE_ALGORITHM)}
                                    for earlier in source.get("superseded", ())]}
                    for source in record.sources],
        "specification": {"blake2b": hashlib.blake2b(specification.read_bytes()).hexdigest()},
        "dpmd_version": dpmd.__version__,
        "released_at": iso_time(released_at),
    }  # fmt: skip
    return json.dumps(document, indent=1).encode() + b"\n"


def write_manifest(directory: Path, name: str, content: bytes, daq_id: str) -> None:
    """Write (or replace our own) ``name`` in ``directory``, whole or not at all (blocking)."""
    final = directory / name
    if os.path.lexists(final) and not _ours(final, daq_id):
        raise OSError(errno.EEXIST, "a different file has the manifest's name", str(final))
    write_durably(final, content)


def remove_manifest(directory: Path, name: str, daq_id: str) -> None:
    """An aborted delivery's manifest, and its temporary, if they are ours (blocking)."""
    final = directory / name
    if _ours(final, daq_id):
        final.unlink()
    temporary = directory / f".{name}.tmp"
    if temporary.is_file() and not temporary.is_symlink():
        temporary.unlink()


def _ours(path: Path, daq_id: str) -> bool:
    try:
        if path.is_symlink() or path.stat().st_size > 1 << 24:
            return False
        return bool(json.loads(path.read_bytes()).get("daq_id") == daq_id)
    except (OSError, ValueError, AttributeError):
        return False
