"""dpmd-merge as a real child process: exit codes, signals, nothing half-written."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from dpmd.workers import child_environment

from .fitsfactory import (
    image,
    image_hdu,
    open_verified,
    run_cli,
    write_fits,
    write_raw_source,
    write_spec,
)

DATE = "2024-02-01T12:00:00"


def new_file_spec(*sources: dict, file_id: str = "P.2024-01-01T00:00:00.000") -> dict:
    return {"id": "DAQ.1", "sources": list(sources), "target": {"fileId": file_id}}


def file_source(name: str, location: str, **extra: object) -> dict:
    return {"type": "fitsFile", "sourceName": name, "location": location, **extra}


def run_in_process(args: list[str]) -> tuple[int, list[dict]]:
    """main() in this process: exit code and stdout's JSON lines (stderr is dropped)."""
    import contextlib
    import io

    from dpmd.merge.__main__ import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(args)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


class ExitCodeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        self.source = write_fits(
            os.path.join(self.root, "src.fits"), [("OBJECT", "x")], extensions=[image_hdu("A")]
        )
        self.spec = write_spec(
            os.path.join(self.root, "spec.json"), new_file_spec(file_source("dcs", "src.fits"))
        )
        self.product = os.path.join(self.root, "P.2024-01-01T00:00:00.000.fits")

    def assertExit(
        self, code: int, args: list[str], **kwargs: object
    ) -> subprocess.CompletedProcess:
        result = run_cli(args, **kwargs)
        self.assertEqual(result.returncode, code, (args, result.stdout, result.stderr))
        return result

    def products(self) -> list[str]:
        return sorted(n for n in os.listdir(self.root) if n not in ("src.fits", "spec.json"))

    def test_success(self) -> None:
        result = self.assertExit(0, ["--json", "--date", DATE, self.spec])
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        peak = lines[-1].pop("peak_rss_bytes")
        self.assertEqual(
            lines[-1],
            {"type": "result", "path": self.product, "size": os.path.getsize(self.product)},
        )
        # Its own ru_maxrss, in bytes: a Python interpreter with numpy is tens of MiB.
        self.assertTrue(10 << 20 <= peak < 1 << 30, peak)
        self.assertIn("wrote", result.stderr)
        with open_verified(self.product) as hdus:
            self.assertEqual(hdus[0].header["OBJECT"], "x")
        human = self.assertExit(0, [self.spec])
        self.assertEqual(human.stdout, self.product + "\n")

    def test_help(self) -> None:
        result = self.assertExit(0, ["--help"])
        self.assertIn("Exit codes", result.stdout)

    def test_bad_command_line(self) -> None:
        resolve_unknown = os.path.join(self.root, "unknown.json")
        with open(resolve_unknown, "w") as stream:
            json.dump({"nosuch": "/x.fits"}, stream)
        resolve_bad = os.path.join(self.root, "bad.json")
        with open(resolve_bad, "w") as stream:
            stream.write("[1, 2]")
        for args in (
            [],
            ["--bogus", self.spec],
            ["--date", "yesterday", self.spec],
            ["--log-level", "LOUD", self.spec],
            [os.path.join(self.root, "none.json")],
            ["--resolve", os.path.join(self.root, "none.json"), self.spec],
            ["--resolve", resolve_unknown, self.spec],
            ["--resolve", resolve_bad, self.spec],
            ["--root", os.path.join(self.root, "none"), self.spec],
            ["-o", self.source, self.spec],
        ):
            self.assertExit(2, args)
        self.assertEqual(self.products(), ["bad.json", "unknown.json"])

    def test_bad_command_line_under_json_ends_with_an_error_line(self) -> None:
        result = self.assertExit(2, ["--json", "--bogus", self.spec])
        self.assertEqual(
            [json.loads(line) for line in result.stdout.splitlines()],
            [{"type": "error", "code": 2, "message": "unrecognized arguments: --bogus"}],
        )
        self.assertIn("usage: dpmd-merge", result.stderr)
        for args in (  # the same in this process, faster, for the other forms
            ["--js", "--log-level", "loud", self.spec],
            ["--json", "--date", "yesterday", self.spec],
            ["--json"],
        ):
            code, lines = run_in_process(args)
            self.assertEqual(code, 2)
            self.assertEqual([(line["type"], line["code"]) for line in lines], [("error", 2)], args)
        self.assertEqual(run_in_process(["--bogus", self.spec]), (2, []))

    def test_version(self) -> None:
        import dpmd

        result = self.assertExit(0, ["--version"])
        self.assertEqual(result.stdout, f"dpmd-merge {dpmd.__version__}\n")

    def test_log_levels_are_the_servers(self) -> None:
        import logging

        from dpmd.config import LOG_LEVELS
        from dpmd.merge.__main__ import LOG_LEVELS as merger_levels
        from dpmd.merge.__main__ import build_parser

        self.assertEqual(tuple(merger_levels), LOG_LEVELS)
        parse = build_parser().parse_args
        for level in (*LOG_LEVELS, "WARN", "warning", "Error"):
            self.assertIsInstance(parse(["--log-level", level, "x"]).log_level, int)
        self.assertEqual(parse(["--log-level", "critical", "x"]).log_level, logging.CRITICAL)
        quiet = self.assertExit(0, ["--log-level", "warn", "-o", self.product, self.spec])
        self.assertNotIn("INFO", quiet.stderr)
        debug = self.assertExit(0, ["--log-level", "debug", "-o", self.product, self.spec])
        self.assertIn("DEBUG", debug.stderr)
        self.assertExit(2, ["--log-level", "trace", self.spec])

    def test_invalid_specification(self) -> None:
        spec = new_file_spec(
            file_source(
                "dcs", "src.fits", keywordRules=[{"type": "filter", "selectionPatterns": ["+q *"]}]
            ),
            {"type": "fitsFile"},
        )
        write_spec(self.spec, spec)
        result = self.assertExit(3, ["--json", self.spec])
        self.assertIn(
            "$.sources[0].keywordRules[0].selectionPatterns[0]: unknown kind letter", result.stderr
        )
        self.assertIn("$.sources[1]: 'sourceName' is a required property", result.stderr)
        error = json.loads(result.stdout.splitlines()[-1])
        self.assertEqual((error["type"], error["code"]), ("error", 3))
        with open(self.spec, "w") as stream:
            stream.write("{")
        self.assertExit(3, [self.spec])
        self.assertEqual(self.products(), [])

    def test_rule_that_cannot_apply_to_a_file(self) -> None:
        write_spec(
            self.spec,
            new_file_spec(
                file_source(
                    "dcs",
                    "src.fits",
                    keywordRules=[
                        {
                            "type": "transform",
                            "selectionPatterns": ["+v OBJECT"],
                            "regex": "$",
                            "format": "_TOO_LONG",
                        }
                    ],
                )
            ),
        )
        result = self.assertExit(3, [self.spec])
        self.assertIn("cannot rename 'OBJECT' to 'OBJECT_TOO_LONG'", result.stderr)
        self.assertEqual(self.products(), [])

    def test_source_problems(self) -> None:
        junk = os.path.join(self.root, "junk.fits")
        with open(junk, "wb") as stream:
            stream.write(b"not a FITS file at all" * 200)
        truncated = os.path.join(self.root, "cut.fits")
        with open(self.source, "rb") as stream:
            data = stream.read()
        with open(truncated, "wb") as stream:
            stream.write(data[:-2880])
        for location, message in (
            ("missing.fits", "does not exist"),
            ("junk.fits", "is not valid FITS"),
            ("cut.fits", "truncated"),
            ("dcs-host:/data/x.fits", "pass --resolve"),
        ):
            write_spec(self.spec, new_file_spec(file_source("dcs", location)))
            result = self.assertExit(4, [self.spec])
            self.assertIn(message, result.stderr)
        self.assertEqual(self.products(), ["cut.fits", "junk.fits"])

    def test_output_cannot_be_written(self) -> None:
        self.assertExit(5, ["-o", os.path.join(self.root, "no", "dir", "p.fits"), self.spec])
        self.assertExit(5, ["-o", os.path.join(self.source, "p.fits"), self.spec])
        write_spec(self.spec, new_file_spec(file_source("dcs", "src.fits"), file_id="src"))
        result = self.assertExit(5, [self.spec])  # the default name is a source's file
        self.assertIn("refusing to overwrite", result.stderr)
        self.assertEqual(self.products(), [])

    def test_file_size_limit_leaves_nothing(self) -> None:
        """A write refused by the system (EFBIG here, as with a full disk) is exit 5."""
        big = write_fits(
            os.path.join(self.root, "big.fits"), extensions=[image_hdu("BIG", (1024, 1024))]
        )

        def limit() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

        write_spec(self.spec, new_file_spec(file_source("dcs", big)))
        result = self.assertExit(5, ["--json", self.spec], preexec_fn=limit)
        self.assertIn("File too large", result.stderr)
        self.assertEqual(self.products(), ["big.fits"])
        # the space is reserved before copying: it fails before any byte is copied
        self.assertEqual(
            [json.loads(line)["type"] for line in result.stdout.splitlines()], ["error"]
        )

    def test_other_failure(self) -> None:
        write_spec(
            self.spec,
            {
                **new_file_spec(),
                "target": {"fileId": "P", "source": file_source("dcs", "src.fits")},
            },
        )
        with open(os.path.join(self.root, ".src.fits.dpmd-rollback"), "w") as stream:
            stream.write("garbage\n")
        result = self.assertExit(1, [self.spec])
        self.assertIn("damaged", result.stderr)


class VersionTests(SynchronousTestCase):
    def test_version_is_the_installed_distributions(self) -> None:
        from importlib import metadata

        import dpmd

        self.assertEqual(dpmd.__version__, metadata.version("dpmd"))

    def test_version_of_a_tree_never_installed(self) -> None:
        from importlib import metadata

        import dpmd

        def not_installed(name: str) -> str:
            raise metadata.PackageNotFoundError(name)

        self.patch(metadata, "version", not_installed)
        dpmd._installed_version.cache_clear()
        self.addCleanup(dpmd._installed_version.cache_clear)
        self.assertEqual(dpmd.__version__, dpmd.UNKNOWN_VERSION)
        self.assertRaises(AttributeError, getattr, dpmd, "no_such_attribute")


class InterruptionTests(SynchronousTestCase):
    """Real signals sent to a merger that is copying a large extension."""

    SIZE = 192 << 20

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.addCleanup(shutil.rmtree, self.root)
        self.big = write_raw_source(os.path.join(self.root, "big.fits"), self.SIZE)

    def start(self, args: list[str]) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-m", "dpmd.merge", "--json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_environment(),
        )
        self.addCleanup(lambda: child.poll() is None and child.kill())
        self.addCleanup(child.stderr.close)
        self.addCleanup(child.stdout.close)
        return child

    def stop_mid_copy(self, child: subprocess.Popen) -> None:
        """Read progress until the copy is under way, then freeze the child there."""
        for line in child.stdout:
            message = json.loads(line)
            if (
                message["type"] == "progress"
                and message["stage"] == "write"
                and 8 << 20 <= message["done"] < message["total"] - (64 << 20)
            ):
                os.kill(child.pid, signal.SIGSTOP)
                return
        self.fail(f"no progress line mid-copy; stderr: {child.stderr.read()}")

    def open_files(self, child: subprocess.Popen) -> list[str]:
        directory = f"/proc/{child.pid}/fd"
        return [os.readlink(os.path.join(directory, fd)) for fd in os.listdir(directory)]

    def finish(self, child: subprocess.Popen, signum: int) -> None:
        os.kill(child.pid, signum)
        if signum != signal.SIGKILL:
            os.kill(child.pid, signal.SIGCONT)
        self.assertEqual(child.wait(timeout=30), -signum)

    def in_place_setup(self) -> tuple[str, str, bytes]:
        target = write_fits(
            os.path.join(self.root, "dcs.fits"),
            [("ORIGIN", "dcs")],
            data=image((8, 8)),
            extensions=[image_hdu("OWN")],
            reserve=30,
        )
        spec = write_spec(
            os.path.join(self.root, "spec.json"),
            {
                "id": "DAQ.2",
                "sources": [file_source("big", "big.fits")],
                "target": {"fileId": "P", "source": file_source("dcs", "dcs.fits")},
            },
        )
        with open(target, "rb") as stream:
            return target, spec, stream.read()

    def test_kill_new_file_leaves_nothing(self) -> None:
        spec = write_spec(
            os.path.join(self.root, "spec.json"),
            new_file_spec(file_source("big", "big.fits"), file_id="P"),
        )
        child = self.start([spec])
        self.stop_mid_copy(child)
        unnamed = [p for p in self.open_files(child) if p.startswith(self.root + "/#")]
        self.assertEqual(len(unnamed), 1, self.open_files(child))  # being written, unnamed
        self.assertTrue(unnamed[0].endswith("(deleted)"))
        self.finish(child, signal.SIGKILL)
        self.assertEqual(sorted(os.listdir(self.root)), ["big.fits", "spec.json"])

    def test_term_new_file_leaves_nothing(self) -> None:
        spec = write_spec(
            os.path.join(self.root, "spec.json"),
            new_file_spec(file_source("big", "big.fits"), file_id="P"),
        )
        child = self.start([spec])
        self.stop_mid_copy(child)
        self.finish(child, signal.SIGTERM)
        self.assertEqual(sorted(os.listdir(self.root)), ["big.fits", "spec.json"])
        self.assertIn("terminated by SIGTERM", child.stderr.read())

    def test_kill_in_place_is_rolled_back_by_next_run(self) -> None:
        target, spec, original = self.in_place_setup()
        reference = os.path.join(self.root, "reference.fits")
        self.assertEqual(run_cli(["--date", DATE, "-o", reference, spec]).returncode, 0)
        child = self.start(["--date", DATE, spec])
        self.stop_mid_copy(child)
        record = os.path.join(self.root, ".dcs.fits.dpmd-rollback")
        self.assertTrue(os.path.exists(record))
        self.finish(child, signal.SIGKILL)
        self.assertGreater(os.path.getsize(target), len(original))  # half-appended
        dry = run_cli(["--dry-run", spec])
        self.assertIn("has an interrupted in-place merge", dry.stderr)
        self.assertTrue(os.path.exists(record))
        result = run_cli(["--date", DATE, spec])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("rolled back an interrupted in-place merge", result.stderr)
        self.assertFalse(os.path.exists(record))
        with open(target, "rb") as one, open(reference, "rb") as two:
            self.assertEqual(one.read(), two.read())

    def test_term_in_place_restores_at_once(self) -> None:
        target, spec, original = self.in_place_setup()
        child = self.start(["--date", DATE, spec])
        self.stop_mid_copy(child)
        self.finish(child, signal.SIGTERM)
        with open(target, "rb") as stream:
            self.assertEqual(stream.read(), original)
        self.assertEqual(sorted(os.listdir(self.root)), ["big.fits", "dcs.fits", "spec.json"])
