"""``python -m dpmd.digest FILE…``: the size and checksum by which a delivery is recognised.

A release records the product's size and checksum before it delivers
anything; after a crash or on a retry, a file at a receiver that has both is
the product, whatever its inode (a hard link, a copy, an rsync).  The
checksum is BLAKE2b-512, the algorithm of coreutils' ``b2sum``, so that the
same check can be made on a remote receiver with the tools it already has.

Reading a large product takes seconds, so the server runs this as a child
process and never on its reactor.  Each file gives one JSON line on stdout:
``{"path", "size", "blake2b"}``, or ``{"path", "error"}``; the exit status is
0 when every file could be read, 1 otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ALGORITHM = "blake2b"
CHUNK = 1 << 20

SOURCE_ALGORITHM = "sha256"
"""The checksum of each source, taken at collection: SHA-256, which processors compute
in hardware (x86 SHA extensions, ARMv8 crypto) at about three times BLAKE2b-512's rate
on this project's machines (``bench/collect.py``), and which ``sha256sum`` checks
anywhere.  Sources are read whole at every collection; a product once per release."""


@dataclass(frozen=True)
class Digest:
    """A file's size and BLAKE2b-512 checksum (as ``b2sum`` gives it)."""

    size: int
    blake2b: str

    def to_json(self) -> dict[str, int | str]:
        return {"size": self.size, ALGORITHM: self.blake2b}

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> Digest:
        return cls(size=int(str(obj["size"])), blake2b=str(obj[ALGORITHM]))

    def describe(self) -> str:
        return f"{self.size} bytes, {ALGORITHM} {self.blake2b[:16]}…"


def file_digest(path: str | os.PathLike[str]) -> Digest:
    """Read the whole file once (blocking)."""
    return Digest(*hash_file(path, ALGORITHM))


def hash_file(path: str | os.PathLike[str], algorithm: str) -> tuple[int, str]:
    """The file's size and hexadecimal ``algorithm`` checksum, read once (blocking)."""
    hasher = hashlib.new(algorithm)
    size = 0
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while count := handle.readinto(buffer):
            hasher.update(view[:count])
            size += count
    return size, hasher.hexdigest()


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m dpmd.digest FILE...", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        try:
            line = {"path": path, **file_digest(Path(path)).to_json()}
        except OSError as error:
            line, status = {"path": path, "error": error.strerror or str(error)}, 1
        print(json.dumps(line), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
