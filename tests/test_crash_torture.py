"""``kill -9`` at thirty random moments and in each named window: nothing lost or done twice.

See ``tests/torture.py`` for the program; ``bench/crash_torture.py`` runs it longer.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.trial.unittest import SkipTest, TestCase

from tests.torture import POINTS, torture


class CrashTortureTests(TestCase):
    timeout = 240

    def test_thirty_kills_and_every_named_window(self) -> None:
        root = Path(self.mktemp()).absolute()
        root.mkdir()
        shm = Path("/dev/shm")
        if not shm.is_dir() or os.stat(shm).st_dev == os.stat(root).st_dev:
            raise SkipTest("no second file system (/dev/shm) for the symlink and copy receivers")
        report = torture(kills=30, daqs=20, seed=1, root=root)
        self.assertTrue(report.ok, report.summary())
        self.assertEqual(report.completed, 20, report.summary())
        self.assertEqual({point: report.windows[point] for point in POINTS},
                         dict.fromkeys(POINTS, 1), report.summary())  # fmt: skip
        self.assertGreaterEqual(report.kills, 34)
