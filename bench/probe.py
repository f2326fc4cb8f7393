"""A dpmd whose reactor is watched: ``python -m bench.probe REPORT -- TWISTD-ARGS``.

It runs ``twistd`` as usual, with a 1 ms ``LoopingCall`` on the reactor that
notes how late each of its calls comes: the longest lateness is the longest
time the reactor could not answer anyone.  ``SIGUSR2`` writes the longest
lateness since the last report to ``REPORT`` (seconds, as text) and starts
again; ``SIGUSR1`` has the reactor run a full garbage collection (as Python
would by itself, some time, with that many objects alive).  For
``bench/reactor.py``; it is not part of dpmd.
"""

from __future__ import annotations

import gc
import signal
import sys
import time
from pathlib import Path
from typing import Any

TICK = 0.001


class Lateness:
    def __init__(self, report: Path) -> None:
        self.report = report
        self.worst = 0.0
        self.expected = 0.0

    def start(self, reactor: Any) -> None:
        from twisted.internet.task import LoopingCall

        self.expected = time.monotonic() + TICK
        LoopingCall(self.tick).start(TICK, now=False)
        signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(gc.collect))
        signal.signal(signal.SIGUSR2, lambda *_: reactor.callFromThread(self.write))

    def tick(self) -> None:
        now = time.monotonic()
        self.worst = max(self.worst, now - self.expected)
        self.expected = now + TICK

    def write(self) -> None:
        temporary = self.report.with_suffix(".tmp")
        temporary.write_text(f"{self.worst:.6f}\n")
        temporary.replace(self.report)
        self.worst = 0.0
        self.expected = time.monotonic() + TICK


def main() -> None:
    report, separator, *twistd = sys.argv[1:]
    assert separator == "--", "usage: python -m bench.probe REPORT -- TWISTD-ARGS"
    from twisted.internet import reactor
    from twisted.scripts.twistd import run

    lateness = Lateness(Path(report))
    reactor.callWhenRunning(lateness.start, reactor)  # type: ignore[attr-defined]
    sys.argv = ["twistd", *twistd]
    run()


if __name__ == "__main__":
    main()
