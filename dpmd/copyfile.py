"""``python -m dpmd.copyfile SOURCE TARGET``: copy a file so that TARGET is never partial.

The copy goes to a hidden temporary name beside TARGET, is fsync'd, then
renamed to TARGET and the directory fsync'd: a reader of TARGET's directory
(an archive's ingestion) sees nothing, then the whole file.  Progress is
printed as JSON lines; the exit status is 0 on success, 1 on failure with
the reason on stderr.  It runs as a child process so that the server never
copies large files itself.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

from dpmd.durable import fsync_directory

CHUNK = 64 * 1024 * 1024
PROGRESS_EVERY = 256 * 1024 * 1024


def temporary_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.dpmd-part")


def copy_durably(source: Path, target: Path) -> int:
    temporary = temporary_name(target)
    size = source.stat().st_size
    done = 0
    reported = 0
    with open(source, "rb") as reader, open(temporary, "wb") as writer:
        while done < size:
            try:
                sent = os.copy_file_range(reader.fileno(), writer.fileno(), CHUNK)
            except OSError:
                sent = os.sendfile(writer.fileno(), reader.fileno(), None, CHUNK)
            if sent == 0:
                break
            done += sent
            if done - reported >= PROGRESS_EVERY:
                reported = done
                print(json.dumps({"type": "progress", "done": done, "total": size}), flush=True)
        if done != size:
            raise OSError(errno.EIO, f"{source} changed size during the copy")
        os.fsync(writer.fileno())
    os.replace(temporary, target)
    fsync_directory(target.parent)
    print(json.dumps({"type": "progress", "done": done, "total": size}), flush=True)
    return done


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 2:
        print("usage: python -m dpmd.copyfile SOURCE TARGET", file=sys.stderr)
        return 2
    source, target = Path(arguments[0]), Path(arguments[1])
    try:
        copy_durably(source, target)
    except OSError as error:
        temporary_name(target).unlink(missing_ok=True)
        print(f"cannot copy {source} to {target}: {error.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
