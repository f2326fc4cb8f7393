"""What the source checksums cost: collection with them against collection without.

    python bench/collect.py                   # 4 local sources of 64 MiB, 5 rounds
    python bench/collect.py --mib 256 --sources 2 --rounds 3
    python bench/collect.py --remote          # also fetched with rsync over a local sshd

Local sources are read where they are (nothing is copied), so collection
without checksums is a ``stat`` and a 9-byte read per file: no whole-file
hash can stay within 10 % of that.  The bench therefore also runs the whole
DAQ (collect, merge, release, through a real in-process dpmd on the same
files) and prints what the checksums add against it.  Both variants of
collection run in the same process, alternately, on files already in the
page cache (one warm-up read each), as the server runs them: the real
``dpmd.stages.collect.collect`` on the real reactor, hashing in the reactor's
thread pool.  It prints numbers and asserts nothing.

``--remote`` also fetches the sources as remote ones are collected: dpmd's own
rsync command line over ssh (a private sshd on 127.0.0.1, as the tests start
it), two transfers at once (``limits.transfer``'s default), each file hashed
once it has arrived, against the same transfers without the hashing.  Over
the loopback, ssh's encryption is the only limit of a transfer, so this is the
least favourable network there is for the hashing's share.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredSemaphore, ensureDeferred, succeed
from twisted.internet.threads import deferToThread, deferToThreadPool

from dpmd.config import build_config
from dpmd.digest import SOURCE_ALGORITHM, hash_file
from dpmd.model import DaqSubState
from dpmd.record import DaqRecord
from dpmd.spec import parse_specification
from dpmd.stages.collect import collect
from dpmd.stages.transfer import rsync_argv
from dpmd.tap import build_service
from tests.fitsfactory import write_raw_source
from tests.rpcclient import connect


class BenchHost:
    """The part of ``StageHost`` collection uses, on the real reactor and thread pool."""

    def __init__(self, root: Path, specification_text: bytes) -> None:
        self.config = build_config({"dataroot": str(root)}, environ={})
        self.specification = parse_specification(specification_text)
        self.record = DaqRecord(id="BENCH", file_id="BENCH", seq=1,
                                substate=DaqSubState.Collecting, queued_at=time.time() + 3600,
                                timestamp=0.0)  # fmt: skip
        self.directory = root / "daq"
        self.clock = reactor
        self.merge_slots = DeferredSemaphore(1)
        self.transfer_slots = DeferredSemaphore(2)

    def run_blocking(self, function: Any, *args: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    def set_progress(self, *_: Any) -> None:
        pass

    def set_source_progress(self, *_: Any) -> None:
        pass

    def alert(self, *_: Any) -> Deferred[None]:
        return succeed(None)


def specification(daq_id: str, paths: list[str]) -> dict[str, Any]:
    return {"id": daq_id, "target": {"fileId": daq_id},
            "sources": [{"type": "fitsFile", "sourceName": f"s{number}", "location": path}
                        for number, path in enumerate(paths)]}  # fmt: skip


async def collect_once(host: BenchHost, checksums: bool) -> float:
    started = time.perf_counter()
    await collect(host, checksums)  # type: ignore[arg-type]
    return time.perf_counter() - started


def remote_collection(root: Path, paths: list[str], rounds: int) -> tuple[float, float]:
    """Median seconds to fetch every source over ssh, without and with hashing each (blocking)."""
    from tests.sshd import HOST_ALIAS, SshServer

    server = SshServer(root / "sshd").start()
    try:
        settings = {"dataroot": str(root), "transfer.ssh_options": server.ssh_options}
        transfer = build_config(settings, environ={}).transfer
        fetched = root / "fetched"

        def fetch(path: str, checksum: bool) -> None:
            destination = fetched / Path(path).name
            argv = rsync_argv(transfer, f"{HOST_ALIAS}:{path}", str(destination))
            subprocess.run(argv, check=True, capture_output=True)
            if checksum:
                hash_file(destination, SOURCE_ALGORITHM)

        def once(checksum: bool) -> float:
            shutil.rmtree(fetched, ignore_errors=True)
            fetched.mkdir()
            started = time.perf_counter()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda path: fetch(path, checksum), paths))
            return time.perf_counter() - started

        plain, summed = [], []
        for _ in range(rounds):
            plain.append(once(False))
            summed.append(once(True))
        return statistics.median(plain), statistics.median(summed)
    finally:
        server.stop()


async def whole_daq(root: Path, paths: list[str]) -> dict[str, float]:
    """One DAQ through a real dpmd (in this process, port 0): each stage's seconds."""
    root.mkdir()
    settings = {"dataroot": str(root), "listen": ["tcp:0:interface=127.0.0.1"]}
    service = build_service(build_config(settings, environ={}), reactor)
    service.startService()
    try:
        caller = await connect(service.ports[0].getHost().port)
        await caller.call("Subscribe", "/daq/status")
        await caller.call("/daq/QueueDaq", json.dumps(specification("WHOLE.1", paths)))
        await caller.wait_for("WHOLE.1", "Completed", timeout=600)
        timeline = await caller.call("/daq/GetTimeline")
        caller.transport.loseConnection()
    finally:
        await service.stopService()
    [daq] = [entry for entry in timeline["daqs"] if entry["id"] == "WHOLE.1"]
    return {name: run["ended_at"] - run["started_at"] for name, run in daq["stages"].items()}


async def main(options: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="dpmd-bench-collect-", dir=options.dir))
    paths = [write_raw_source(str(root / f"s{number}.fits"), options.mib << 20)
             for number in range(options.sources)]  # fmt: skip
    for path in paths:  # into the page cache, as a file just written by an instrument is
        Path(path).read_bytes()
    total = sum(Path(path).stat().st_size for path in paths)
    host = BenchHost(root, json.dumps(specification("BENCH", paths)).encode())
    without, with_sums = [], []
    for _ in range(options.rounds):
        without.append(await collect_once(host, checksums=False))
        with_sums.append(await collect_once(host, checksums=True))
    plain, summed = statistics.median(without), statistics.median(with_sums)
    print(f"{options.sources} local sources x {options.mib} MiB = {total / 2**20:.0f} MiB, "
          f"{options.rounds} rounds (medians)")
    print(f"collection without checksums: {plain * 1000:9.2f} ms")
    print(f"collection with checksums:    {summed * 1000:9.2f} ms "
          f"({total / 2**20 / summed:.0f} MiB/s hashed)")
    print(f"ratio with / without:         {summed / plain:9.1f}")
    if options.remote:
        plain_remote, summed_remote = await deferToThread(remote_collection, root, paths,
                                                          options.rounds)  # fmt: skip
        print(f"remote (rsync over ssh to 127.0.0.1): {plain_remote:.3f} s without checksums "
              f"({total / 2**20 / plain_remote:.0f} MiB/s), {summed_remote:.3f} s with: "
              f"{100 * (summed_remote - plain_remote) / plain_remote:+.1f} %")  # fmt: skip
    stages = await whole_daq(root / "server", paths)
    whole = sum(stages.values())
    added = summed - plain
    print("whole DAQ (real dpmd, checksums on): "
          + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in stages.items())
          + f" = {whole:.3f} s")
    print(f"the checksums' share of the whole DAQ: {added:.3f} s of {whole:.3f} s = "
          f"{100 * added / whole:.1f} % (without them it would take {whole - added:.3f} s: "
          f"+{100 * added / (whole - added):.1f} %)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--mib", type=int, default=64, help="MiB of data per source")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", help="where to make the temporary directory")
    parser.add_argument("--remote", action="store_true",
                        help="also fetch the sources with rsync over a local sshd")  # fmt: skip
    arguments = parser.parse_args()
    outcome: list[Any] = []

    def begin() -> None:
        done = ensureDeferred(main(arguments))
        done.addErrback(outcome.append).addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(begin)
    reactor.run()
    if outcome:
        print(outcome[0].getTraceback(), file=sys.stderr)
        sys.exit(1)
