"""Benchmark dpmd-merge against `cat` and a straightforward astropy merge.

    python bench/merge.py [--ext-mib 8] [--files 4] [--extensions 4] [--scale 4]
                          [--repeat 3] [--dir DIR] [--keep]

Generates two source sets (files x extensions x ext-mib, and `scale` times
larger), then runs each contender as a child process and reports wall time and
peak RSS (VmHWM of the child, polled). Contenders write into one output file:

* cat        - `cat` of the source files (page cache only, no fsync)
* cat+fsync  - the same followed by `sync FILE` (dpmd-merge fsyncs its product)
* dpmd-merge - `python -m dpmd.merge -o OUT SPEC` (new-file target)
* astropy    - open every source, append all extensions, `writeto(checksum=True)`

Each figure is the median of --repeat runs after one warm-up run, so all
contenders read from the page cache. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20

ASTROPY_MERGE = r"""
import sys
from astropy.io import fits
out, sources = sys.argv[1], sys.argv[2:]
opened = [fits.open(path) for path in sources]
primary = fits.PrimaryHDU()
for hdus in opened:
    for card in hdus[0].header.cards:
        structure = ("SIMPLE", "BITPIX", "NAXIS", "EXTEND")
        if card.keyword not in primary.header and card.keyword not in structure:
            primary.header.append(card)
fits.HDUList([primary] + [hdu for hdus in opened for hdu in hdus[1:]]).writeto(out, checksum=True)
"""


def header(cards: list[tuple[str, str]]) -> bytes:
    """A FITS header from (name, value-text) pairs, padded to whole blocks."""
    text = "".join(f"{name:<8}= {value:>20}".ljust(80) for name, value in cards)
    text += "END".ljust(80)
    return (text + " " * (-len(text) % 2880)).encode("ascii")


def make_source(path: str, number: int, extensions: int, ext_bytes: int, block: bytes) -> None:
    with open(path, "wb") as stream:
        stream.write(
            header(
                [
                    ("SIMPLE", "T"),
                    ("BITPIX", "8"),
                    ("NAXIS", "0"),
                    ("EXTEND", "T"),
                    (f"SRC{number}", str(number)),
                ]
            )
        )
        for ext in range(extensions):
            stream.write(
                header(
                    [
                        ("XTENSION", "'IMAGE   '"),
                        ("BITPIX", "8"),
                        ("NAXIS", "1"),
                        ("NAXIS1", str(ext_bytes)),
                        ("PCOUNT", "0"),
                        ("GCOUNT", "1"),
                        ("EXTNAME", f"'S{number}E{ext}'"),
                    ]
                )
            )
            left = ext_bytes
            while left:
                chunk = block[: min(left, len(block))]
                stream.write(chunk)
                left -= len(chunk)
            stream.write(b"\0" * (-ext_bytes % 2880))


def make_set(directory: str, files: int, extensions: int, ext_bytes: int) -> tuple[str, list[str]]:
    os.makedirs(directory, exist_ok=True)
    block = os.urandom(4 * MIB)
    paths = []
    for number in range(files):
        path = os.path.join(directory, f"src{number}.fits")
        make_source(path, number, extensions, ext_bytes, block)
        paths.append(path)
    spec = {
        "id": "BENCH",
        "sources": [
            {"type": "fitsFile", "sourceName": f"s{n}", "location": p} for n, p in enumerate(paths)
        ],
        "target": {"fileId": "BENCH.2024-01-01T00:00:00.000"},
    }
    spec_path = os.path.join(directory, "spec.json")
    with open(spec_path, "w") as stream:
        json.dump(spec, stream)
    return spec_path, paths


def _peak_rss(pid: int) -> int:
    """VmHWM (peak RSS of the process's current program) in bytes, 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as stream:
            for line in stream:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_child(argv: list[str], stdout_path: str | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process.

    The peak is VmHWM polled every 2 ms: rusage's ru_maxrss would include the
    benchmark's own memory, which the child inherits for a moment before exec.
    """
    stdout = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL  # noqa: SIM115
    env = dict(os.environ, PYTHONPATH=REPO)
    peak = 0
    try:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.DEVNULL, env=env)
        while child.poll() is None:
            peak = max(peak, _peak_rss(child.pid), *(_peak_rss(p) for p in _children(child.pid)))
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
    finally:
        if stdout_path:
            stdout.close()
    if child.returncode != 0:
        raise SystemExit(f"{argv[0]} failed with exit code {child.returncode}")
    return elapsed, peak


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as stream:
            return [int(p) for p in stream.read().split()]
    except OSError:
        return []


def measure(name: str, spec: str, sources: list[str], out: str, repeat: int) -> tuple[float, int]:
    commands = {
        "cat": (["cat", *sources], out),
        "cat+fsync": (["sh", "-c", 'cat "$@" > "$0" && sync "$0"', out, *sources], None),
        "dpmd-merge": (
            [
                sys.executable,
                "-m",
                "dpmd.merge",
                "--log-level",
                "ERROR",
                "--date",
                "2024-01-01T00:00:00",
                "-o",
                out,
                spec,
            ],
            None,
        ),
        "astropy": ([sys.executable, "-c", ASTROPY_MERGE, out, *sources], None),
    }
    argv, stdout_path = commands[name]
    times, peaks = [], []
    for attempt in range(repeat + 1):
        if os.path.exists(out):
            os.unlink(out)
        elapsed, peak = run_child(argv, stdout_path)
        if attempt:  # the first run only warms the page cache
            times.append(elapsed)
            peaks.append(peak)
    os.unlink(out)
    return statistics.median(times), max(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ext-mib", type=int, default=8, help="MiB per extension (default 8)")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--extensions", type=int, default=4)
    parser.add_argument("--scale", type=int, default=4, help="size factor of the second set")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="work directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--skip-astropy", action="store_true")
    args = parser.parse_args()

    work = args.dir or tempfile.mkdtemp(prefix="dpmd-bench-")
    small = args.files * args.extensions * args.ext_mib * MIB
    needed = small * (1 + args.scale) * 2 + 64 * MIB
    free = shutil.disk_usage(work).free
    print(f"work dir {work}: {free / MIB:.0f} MiB free, {needed / MIB:.0f} MiB needed")
    if free < needed:
        raise SystemExit("not enough disk space; use smaller --ext-mib or another --dir")
    contenders = ["cat", "cat+fsync", "dpmd-merge"] + ([] if args.skip_astropy else ["astropy"])
    try:
        for factor in (1, args.scale):
            ext_bytes = args.ext_mib * factor * MIB
            directory = os.path.join(work, f"x{factor}")
            spec, sources = make_set(directory, args.files, args.extensions, ext_bytes)
            total = sum(os.path.getsize(p) for p in sources)
            print(
                f"\nset x{factor}: {args.files} files x {args.extensions} extensions x "
                f"{ext_bytes // MIB} MiB = {total / MIB:.0f} MiB"
            )
            results = {}
            for name in contenders:
                out = os.path.join(directory, "out.fits")
                results[name] = measure(name, spec, sources, out, args.repeat)
            base = results["cat"][0]
            base_sync = results["cat+fsync"][0]
            print(
                f"  {'contender':<11} {'wall s':>8} {'vs cat':>7} {'vs cat+fsync':>13} "
                f"{'peak RSS MiB':>13}"
            )
            for name, (seconds, peak) in results.items():
                print(
                    f"  {name:<11} {seconds:8.3f} {seconds / base:7.2f} "
                    f"{seconds / base_sync:13.2f} {peak / MIB:13.1f}"
                )
            shutil.rmtree(directory)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
