"""Benchmark dpmd-merge against `cat` and a straightforward astropy merge.

    python bench/merge.py [--ext-mib 8] [--files 4] [--extensions 4] [--scale 4]
                          [--keywords 0] [--repeat 3] [--dir DIR] [--keep]
                          [--contenders NAME,...] [--before DIR] [--skip-astropy]

Generates two source sets (files x extensions x ext-mib, and `scale` times
larger), then runs each contender as a child process and reports wall time and
peak RSS (VmHWM of the child, polled). Contenders write into one output file:

* cat        - `cat` of the source files (page cache only, no fsync)
* cat+fsync  - the same followed by `sync FILE` (dpmd-merge fsyncs its product)
* dpmd-merge - `python -m dpmd.merge -o OUT SPEC` (new-file target)
* dpmd+json  - the same with `--json`, as the server runs it
* dpmd+prov  - the same with `--json --provenance FILE` (the provenance line and file)
* astropy    - open every source, append all extensions, `writeto(checksum=True)`

`--keywords N` gives every source N more primary keywords (half value, half
ESO; a third of the names shared by all sources, so priorities override) and
every file source a filter and a transform rule, to weigh the header work.
`--before DIR` adds `before+json`: the merger of another checkout (say an
earlier commit, `git worktree add DIR COMMIT`) run with `--json`, so a change
is measured against its baseline in the same run.

Each figure is the median of --repeat rounds after one warm-up round, so all
contenders read from the page cache; within a round every contender runs once,
so a change of the machine's load hits them alike. Wall and CPU (user + system)
seconds are shown. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

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
    text = "".join(
        (f"{name} = {value}" if name.startswith("HIERARCH") else f"{name:<8}= {value:>20}").ljust(
            80
        )
        for name, value in cards
    )
    text += "END".ljust(80)
    return (text + " " * (-len(text) % 2880)).encode("ascii")


def user_keywords(number: int, count: int) -> list[tuple[str, str]]:
    """`count` keywords of source `number`: value and ESO in turn; every third name
    is the same in all sources (those override each other)."""
    cards = []
    for index in range(count):
        owner = "C" if index % 3 == 0 else str(number)
        if index % 2:
            cards.append((f"HIERARCH ESO INS S{owner} K{index}", str(index)))
        else:
            cards.append((f"K{owner}{index:06d}"[:8], str(index)))
    return cards


def make_source(
    path: str, number: int, extensions: int, ext_bytes: int, block: bytes, keywords: int = 0
) -> None:
    with open(path, "wb") as stream:
        stream.write(
            header(
                [
                    ("SIMPLE", "T"),
                    ("BITPIX", "8"),
                    ("NAXIS", "0"),
                    ("EXTEND", "T"),
                    (f"SRC{number}", str(number)),
                    *user_keywords(number, keywords),
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


#: The rules of every file source when --keywords is given.
KEYWORD_RULES = [
    {"type": "filter", "selectionPatterns": ["+vec *", "-v K0*"]},
    {"type": "transform", "selectionPatterns": ["+e INS *"], "regex": "^INS ", "format": "INS2 "},
]


def make_set(
    directory: str, files: int, extensions: int, ext_bytes: int, keywords: int = 0
) -> tuple[str, list[str]]:
    os.makedirs(directory, exist_ok=True)
    block = os.urandom(4 * MIB)
    paths = []
    for number in range(files):
        path = os.path.join(directory, f"src{number}.fits")
        make_source(path, number, extensions, ext_bytes, block, keywords)
        paths.append(path)
    rules = {"keywordRules": KEYWORD_RULES} if keywords else {}
    spec = {
        "id": "BENCH",
        "sources": [
            {"type": "fitsFile", "sourceName": f"s{n}", "location": p, **rules}
            for n, p in enumerate(paths)
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


@dataclass
class Sample:
    """One run of a contender: wall and CPU (user + system) seconds, peak RSS bytes."""

    wall: float
    cpu: float
    peak: int


def run_child(argv: list[str], stdout_path: str | None = None, repo: str = REPO) -> Sample:
    """Wall and CPU seconds and peak RSS of one child process, with `repo` on its path.

    The peak is VmHWM polled every 2 ms: rusage's ru_maxrss would include the
    benchmark's own memory, which the child inherits for a moment before exec.
    The CPU time is the change of RUSAGE_CHILDREN (children run one at a time);
    it varies less than the wall time when other work shares the machine.
    """
    stdout = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL  # noqa: SIM115
    env = dict(os.environ, PYTHONPATH=repo)
    peak = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        start = time.perf_counter()
        # In `repo`: `python -m` puts the working directory first on sys.path.
        child = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.DEVNULL, env=env, cwd=repo)
        while child.poll() is None:
            peak = max(peak, _peak_rss(child.pid), *(_peak_rss(p) for p in _children(child.pid)))
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
    finally:
        if stdout_path:
            stdout.close()
    if child.returncode != 0:
        raise SystemExit(f"{argv[0]} failed with exit code {child.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Sample(elapsed, cpu, peak)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as stream:
            return [int(p) for p in stream.read().split()]
    except OSError:
        return []


def commands(
    spec: str, sources: list[str], out: str, before: str | None
) -> dict[str, tuple[list[str], str | None, str]]:
    """argv, stdout file and checkout of every contender."""
    merger = [sys.executable, "-m", "dpmd.merge", "--log-level", "ERROR",
              "--date", "2024-01-01T00:00:00", "-o", out]  # fmt: skip
    provenance = os.path.join(os.path.dirname(out), "provenance.json")
    table = {
        "cat": (["cat", *sources], out, REPO),
        "cat+fsync": (["sh", "-c", 'cat "$@" > "$0" && sync "$0"', out, *sources], None, REPO),
        "dpmd-merge": ([*merger, spec], None, REPO),
        "dpmd+json": ([*merger, "--json", spec], None, REPO),
        "dpmd+prov": ([*merger, "--json", "--provenance", provenance, spec], None, REPO),
        "astropy": ([sys.executable, "-c", ASTROPY_MERGE, out, *sources], None, REPO),
    }
    if before:
        table["before+json"] = ([*merger, "--json", spec], None, before)
    return table


def measure(
    names: list[str], spec: str, sources: list[str], out: str, repeat: int, before: str | None
) -> dict[str, tuple[float, float, int]]:
    """Median wall and CPU seconds and peak RSS of each contender.

    Runs are interleaved (one of each contender per round, after a warm-up
    round), so a change of the machine's load hits all contenders alike.
    """
    table = commands(spec, sources, out, before)
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for attempt in range(repeat + 1):
        for name in names:
            argv, stdout_path, repo = table[name]
            if os.path.exists(out):
                os.unlink(out)
            sample = run_child(argv, stdout_path, repo)
            if attempt:  # the first round only warms the page cache
                samples[name].append(sample)
    os.unlink(out)
    return {
        name: (
            statistics.median(s.wall for s in runs),
            statistics.median(s.cpu for s in runs),
            max(s.peak for s in runs),
        )
        for name, runs in samples.items()
    }


def print_results(results: dict[str, tuple[float, float, int]]) -> None:
    base, base_sync = results["cat"][0], results["cat+fsync"][0]
    print(
        f"  {'contender':<11} {'wall s':>8} {'cpu s':>7} {'vs cat':>7} {'vs cat+fsync':>13} "
        f"{'peak RSS MiB':>13}"
    )
    for name, (wall, cpu, peak) in results.items():
        print(
            f"  {name:<11} {wall:8.3f} {cpu:7.3f} {wall / base:7.2f} "
            f"{wall / base_sync:13.2f} {peak / MIB:13.1f}"
        )
    pairs = [("dpmd+json", "dpmd-merge"), ("dpmd+prov", "dpmd-merge"),
             ("dpmd+json", "before+json"), ("dpmd+prov", "before+json")]  # fmt: skip
    for name, reference in pairs:
        if name in results and reference in results:
            wall = results[name][0] / results[reference][0]
            cpu = results[name][1] / results[reference][1]
            print(f"  {name} / {reference}: wall {wall:.3f}, cpu {cpu:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ext-mib", type=int, default=8, help="MiB per extension (default 8)")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--extensions", type=int, default=4)
    parser.add_argument("--scale", type=int, default=4, help="size factor of the second set")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="work directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--keywords", type=int, default=0, help="more keywords per source")
    parser.add_argument("--skip-astropy", action="store_true")
    parser.add_argument(
        "--contenders",
        default="cat,cat+fsync,dpmd-merge,dpmd+json,dpmd+prov,astropy",
        help="comma-separated names (default: all)",
    )
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also run the dpmd-merge of this checkout (an earlier version) with --json, "
        "as contender before+json",
    )
    args = parser.parse_args()

    work = os.path.abspath(args.dir or tempfile.mkdtemp(prefix="dpmd-bench-"))
    before = os.path.abspath(args.before) if args.before else None
    os.makedirs(work, exist_ok=True)
    small = args.files * args.extensions * args.ext_mib * MIB
    needed = small * (1 + args.scale) * 2 + 64 * MIB
    free = shutil.disk_usage(work).free
    print(f"work dir {work}: {free / MIB:.0f} MiB free, {needed / MIB:.0f} MiB needed")
    if free < needed:
        raise SystemExit("not enough disk space; use smaller --ext-mib or another --dir")
    contenders = [
        name for name in args.contenders.split(",") if not (args.skip_astropy and name == "astropy")
    ]
    for required in ("cat+fsync", "cat"):  # the baselines of the ratios
        if required not in contenders:
            contenders.insert(0, required)
    if before:
        contenders.append("before+json")
    try:
        for factor in (1, args.scale):
            ext_bytes = args.ext_mib * factor * MIB
            directory = os.path.join(work, f"x{factor}")
            spec, sources = make_set(
                directory, args.files, args.extensions, ext_bytes, args.keywords
            )
            total = sum(os.path.getsize(p) for p in sources)
            print(
                f"\nset x{factor}: {args.files} files x {args.extensions} extensions x "
                f"{ext_bytes // MIB} MiB = {total / MIB:.0f} MiB"
            )
            out = os.path.join(directory, "out.fits")
            print_results(measure(contenders, spec, sources, out, args.repeat, before))
            shutil.rmtree(directory)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
