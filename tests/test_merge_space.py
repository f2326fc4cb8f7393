"""The free-space check: a product that cannot fit fails early (exit 5), writing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from dpmd.merge.errors import OutputError
from dpmd.merge.plan import Mode, build_plan, resolve_sources
from dpmd.merge.space import check_space, needed_bytes
from dpmd.spec import parse_specification

from .fitsfactory import run_cli, write_fits, write_raw_source, write_spec

MIB = 1 << 20
DATE = "2024-02-01T12:00:00.000"


class FakeStatVfs:
    """os.statvfs_result-like: `free` bytes available in blocks of 4096."""

    def __init__(self, free: int):
        self.f_frsize = self.f_bsize = 4096
        self.f_bavail = free // 4096


def mount_tmpfs(test: SynchronousTestCase, size: str) -> str:
    """A fresh tmpfs of `size`; the test is skipped, saying why, where mounting fails."""
    point = tempfile.mkdtemp(prefix="dpmd-merge-space-")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", point],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        os.rmdir(point)
        reason = result.stderr.strip() or "mount failed"
        raise SkipTest(f"cannot mount a small tmpfs ({reason}; it needs root)")
    test.addCleanup(os.rmdir, point)
    test.addCleanup(subprocess.run, ["umount", "-l", point], check=False)
    return point


def spec_of(*sources: dict, target_source: dict | None = None) -> dict:
    target: dict = {"fileId": "P"}
    if target_source is not None:
        target["source"] = target_source
    return {"id": "SPACE", "target": target, "sources": list(sources)}


def raw(name: str, location: str) -> dict:
    return {"type": "fitsFile", "sourceName": name, "location": location}


class NeededBytesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        write_raw_source(os.path.join(self.root, "raw.fits"), MIB)
        self.target = write_fits(os.path.join(self.root, "t.fits"), [("OBJECT", "t")], reserve=30)

    def plan(self, document: dict, output: str | None = None):
        spec = parse_specification(document)
        paths = resolve_sources(spec, {}, self.root)
        return build_plan(spec, paths, output, self.root, DATE)

    def test_new_file_needs_the_whole_product(self) -> None:
        plan = self.plan(spec_of(raw("raw", "raw.fits")))
        self.assertEqual(needed_bytes(plan), plan.size)

    def test_in_place_needs_the_appended_extensions_and_the_roll_back_record(self) -> None:
        plan = self.plan(spec_of(raw("raw", "raw.fits"), target_source=raw("t", "t.fits")))
        self.assertIs(plan.mode, Mode.IN_PLACE)
        appended = os.path.getsize(os.path.join(self.root, "raw.fits")) - 2880
        self.assertGreaterEqual(needed_bytes(plan), appended + 2880)
        self.assertLess(needed_bytes(plan), appended + 2 * 2880 + 4096)

    def test_target_to_output_needs_the_whole_product(self) -> None:
        output = os.path.join(self.root, "out.fits")
        plan = self.plan(spec_of(raw("raw", "raw.fits"), target_source=raw("t", "t.fits")), output)
        self.assertIs(plan.mode, Mode.TARGET_TO_OUTPUT)
        self.assertEqual(needed_bytes(plan), plan.size)

    def test_refused_with_both_numbers_and_the_file_system(self) -> None:
        plan = self.plan(spec_of(raw("raw", "raw.fits")))
        with self.assertRaises(OutputError) as caught:
            check_space(plan, lambda path: FakeStatVfs(100 * 4096))  # type: ignore[arg-type,return-value]
        needed = -(-plan.size // 4096) * 4096
        self.assertIn(
            f"the product needs {needed} bytes; only {100 * 4096} are free on ",
            str(caught.exception),
        )
        self.assertEqual(caught.exception.exit_code, 5)

    def test_exactly_enough_is_enough(self) -> None:
        plan = self.plan(spec_of(raw("raw", "raw.fits")))
        enough = -(-plan.size // 4096) * 4096
        check_space(plan, lambda path: FakeStatVfs(enough))  # type: ignore[arg-type,return-value]
        with self.assertRaises(OutputError):
            check_space(plan, lambda path: FakeStatVfs(enough - 4096))  # type: ignore[arg-type,return-value]

    def test_a_missing_output_directory_is_checked_on_its_parent(self) -> None:
        seen: list[str] = []

        def statvfs(path: str) -> FakeStatVfs:
            seen.append(path)
            return FakeStatVfs(1 << 40)

        output = os.path.join(self.root, "not", "yet", "out.fits")
        check_space(self.plan(spec_of(raw("raw", "raw.fits")), output), statvfs)  # type: ignore[arg-type]
        self.assertEqual(seen, [self.root])


class SmallFileSystemTests(SynchronousTestCase):
    """A real 1 MiB tmpfs: products of 2 MiB do not fit."""

    def setUp(self) -> None:
        self.disk = mount_tmpfs(self, "1m")
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        write_raw_source(os.path.join(self.root, "raw.fits"), 2 * MIB)

    def assert_refused(self, result: subprocess.CompletedProcess) -> dict:
        self.assertEqual(result.returncode, 5, result.stderr)
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        self.assertNotIn("progress", [line["type"] for line in lines])
        error = lines[-1]
        self.assertEqual((error["type"], error["code"]), ("error", 5))
        self.assertRegex(
            error["message"],
            rf"needs \d+ bytes; only \d+ are free on {self.disk}$",
        )
        return error

    def test_new_product_refused_before_writing(self) -> None:
        spec = write_spec(os.path.join(self.root, "spec.json"), spec_of(raw("raw", "raw.fits")))
        output = os.path.join(self.disk, "P.fits")
        self.assert_refused(run_cli(["--json", "-o", output, spec]))
        self.assertEqual(os.listdir(self.disk), [])

    def test_in_place_target_refused_and_untouched(self) -> None:
        target = write_fits(os.path.join(self.disk, "t.fits"), [("OBJECT", "t")], reserve=30)
        with open(target, "rb") as stream:
            before = stream.read()
        spec = write_spec(
            os.path.join(self.root, "spec.json"),
            spec_of(raw("raw", "raw.fits"), target_source=raw("t", target)),
        )
        error = self.assert_refused(run_cli(["--json", spec]))
        self.assertIn("the update of the target needs", error["message"])
        with open(target, "rb") as stream:
            self.assertEqual(stream.read(), before)
        self.assertEqual(os.listdir(self.disk), ["t.fits"])

    def test_dry_run_prints_the_plan_then_fails(self) -> None:
        spec = write_spec(os.path.join(self.root, "spec.json"), spec_of(raw("raw", "raw.fits")))
        output = os.path.join(self.disk, "P.fits")
        result = run_cli(["--json", "--dry-run", "-o", output, spec])
        self.assert_refused(result)
        kinds = [json.loads(line)["type"] for line in result.stdout.splitlines()]
        self.assertEqual(kinds, ["plan", "provenance", "error"])

    def test_a_product_that_fits_is_written(self) -> None:
        write_raw_source(os.path.join(self.root, "small.fits"), 100 * 1024)
        spec = write_spec(os.path.join(self.root, "spec.json"), spec_of(raw("small", "small.fits")))
        output = os.path.join(self.disk, "P.fits")
        result = run_cli(["--json", "-o", output, spec])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(os.path.exists(output))
