"""Crash torture, longer: ``python bench/crash_torture.py [--kills 300] [--daqs 60] [--seed N]``.

The program of ``tests/torture.py`` (the test suite runs it with 30 kills): a real
dpmd is killed with SIGKILL at random moments and in each named window, then
restarted, many times; it prints the counts (kills, windows hit, DAQs completed,
lost, double deliveries, left-over files, orphans) and exits 1 if any is wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.torture import main

if __name__ == "__main__":
    arguments = sys.argv[1:]
    if "--kills" not in arguments:
        arguments = ["--kills", "300", *arguments]
    if "--daqs" not in arguments:
        arguments = ["--daqs", "60", *arguments]
    sys.exit(main(arguments))
