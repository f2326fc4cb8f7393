"""Every example of README.md and docs/ that talks to a server runs, as written, against one.

What is extracted: each fenced block of a Markdown file.  A shell block
(``sh``, ``bash``, ``shell``, ``console``) talks to a server when it runs
``dpmctl``, ``nc`` or ``socat`` or names the port 12083; a ``python`` block
when it calls ``connect(``.  In a ``console`` block, lines starting with
``$ `` are commands and the lines after them their output: output that is
JSON must have the same members and types (values differ from machine to
machine); other output must be the same text.

How it runs: a real ``twistd --nodaemon --pidfile= dpmd`` in a temporary
folder, which is also the example's working directory (as the README's
"second terminal of the same clone"): it holds ``.venv`` (this Python's
environment), and ``spec.json`` with its source files.  The server listens
on 12083 when that port is free, and the example runs byte for byte as
written; when 12083 is taken, the server gets a free port, ``12083`` in the
example is replaced by it and ``$DPMCTL_CONNECT`` names it.  Each example
has ``TIMEOUT`` seconds: an example that never ends (``nc`` without ``-N``)
fails.  An example that stops the server (``/dpm/Exit``) gets a new one for
the next.  ``$HOME`` is a folder of the test's, for examples that install
files there (shell completion).

Not run: a block preceded by ``<!-- doc-test: skip: REASON -->`` (only blank
lines or other comments between), e.g. installing the systemd unit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

import dpmd
from dpmd.client.demo import prepare_sources
from tests.test_twistd import TWISTD

SOURCE_ROOT = Path(dpmd.__file__).parent.parent
DOCUMENTS = [SOURCE_ROOT / "README.md", *sorted((SOURCE_ROOT / "docs").glob("*.md"))]
PORT = 12083
TIMEOUT = 30
SHELL = frozenset({"sh", "bash", "shell", "console"})
SKIP = re.compile(r"<!--\s*doc-test:\s*skip:\s*(?P<reason>.*?)\s*-->")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<language>[\w+-]*)")
TALKS_SHELL = re.compile(r"\bdpmctl\b|\bnc\b|\bsocat\b|\b12083\b")
"""The programs and the port by which a shell example reaches a dpmd."""
STOPS_SERVER = re.compile(r"/dpm/Exit|dpmctl exit|\.exit\(\)")
"""An example that stops the server: the next one gets a new server."""


@dataclass(frozen=True)
class Example:
    document: Path
    line: int
    language: str
    text: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(SOURCE_ROOT)}:{self.line}"

    @property
    def talks_to_server(self) -> bool:
        if self.language in SHELL:
            return bool(TALKS_SHELL.search(self.text))
        return self.language == "python" and "connect(" in self.text


def examples(document: Path) -> Iterator[Example]:
    """The fenced blocks of a Markdown file, with the skip marker before each, if any."""
    lines = document.read_text().splitlines()
    skip: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = FENCE.match(line)
        if fence:
            close = fence["fence"]
            body_start = index + 1
            index += 1
            while index < len(lines) and not lines[index].startswith(close):
                index += 1
            body = "\n".join(lines[body_start:index]) + "\n"
            yield Example(document, body_start, fence["language"], body, skip)
            skip = None
        elif (marker := SKIP.search(line)) is not None:
            if not marker["reason"]:
                raise AssertionError(f"{document}:{index + 1}: a skip marker needs a reason")
            skip = marker["reason"]
        elif line.strip() and not line.lstrip().startswith("<!--") and skip is not None:
            raise AssertionError(f"{document}:{index + 1}: a skip marker not before a block")
        index += 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def same_shape(expected: Any, actual: Any) -> bool:
    """Same JSON members and types, whatever the values."""
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(same_shape(expected[key], actual[key]) for key in expected)
        )
    if isinstance(expected, list):
        return isinstance(actual, list)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual)
    if isinstance(expected, int | float):
        return isinstance(actual, int | float)
    return type(expected) is type(actual)


def console_parts(text: str) -> list[tuple[str, list[str]]]:
    """``$ `` commands of a console block, each with the output lines shown after it."""
    parts: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            parts.append((line[2:], []))
        elif parts:
            parts[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"output before any command: {line!r}")
    return parts


class Server:
    """A ``twistd dpmd`` child in ``folder``, on 12083 if free; restarted when it ended."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.port = PORT

    def ensure_running(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        for port in (PORT, free_port(), free_port()):
            if port == PORT and not port_is_free(PORT):
                continue
            if self._start(port):
                self.port = port
                return
        raise AssertionError("twistd dpmd did not start")

    def _start(self, port: int) -> bool:
        process = subprocess.Popen(
            [*TWISTD, "--nodaemon", "--pidfile=", "dpmd",
             "--listen", f"tcp:{port}:interface=127.0.0.1"],
            cwd=self.folder,
            env={**os.environ, "PYTHONPATH": str(SOURCE_ROOT), "DATAROOT": str(self.folder)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False  # e.g. the port was taken after all
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            self.process = process
            return True
        process.kill()
        process.wait()
        return False

    def wait_for_exit(self) -> str:
        """After an example that stopped the server: it must end, with status 0."""
        assert self.process is not None
        try:
            status = self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"the server did not stop within {TIMEOUT} s"
        return "" if status == 0 else f"the server ended with status {status}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.communicate()


class DocExampleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.all = [example for document in DOCUMENTS for example in examples(document)]

    def test_the_examples_are_found_and_every_skip_says_why(self) -> None:
        runnable = [e for e in self.all if e.talks_to_server and e.skip is None]
        where = {e.document.name for e in runnable}
        self.assertEqual(where, {"README.md", "client.md", "protocol.md", "specification.md"})
        self.assertGreaterEqual(len(runnable), 8)
        skipped = [e for e in self.all if e.skip is not None]
        self.assertTrue(skipped)
        for example in skipped:
            self.assertIn(example.language, SHELL, example.where)
        quick_start = [e.text for e in runnable if e.document.name == "README.md"][:2]
        self.assertIn("QueryStorageStatus", quick_start[0])
        self.assertIn("/dpm/Exit", quick_start[1])

    def test_every_example_that_talks_to_the_server_runs_as_written(self) -> None:
        dpmctl = Path(sys.prefix) / "bin" / "dpmctl"
        if not dpmctl.exists():
            raise self.skipTest(f"dpmctl is not installed in {sys.prefix} (pip install .)")
        shell = shutil.which("bash")
        if shell is None:
            raise self.skipTest("bash is not installed")
        folder = Path(self.mktemp()).absolute()
        (folder / "home").mkdir(parents=True)
        (folder / ".venv").symlink_to(sys.prefix)
        prepare_sources(folder, "DOC.2026-01-01T00:00:00.000")  # spec.json and its sources
        server = Server(folder)
        self.addCleanup(server.stop)
        failures: list[str] = []
        not_run: list[str] = []
        ran = 0
        for example in self.all:
            if not example.talks_to_server or example.skip is not None:
                continue
            missing = self.missing_programs(example)
            if missing:
                not_run.append(f"{example.where} ({missing} is not installed)")
                continue
            server.ensure_running()
            ran += 1
            problem = self.run_example(example, shell, folder, server.port)
            if not problem and STOPS_SERVER.search(example.text):
                problem = server.wait_for_exit()
            if problem:
                failures.append(f"{example.where}: {problem}")
        self.assertEqual(failures, [])
        if not_run:  # as the remote tests do when rsync or sshd is missing
            raise self.skipTest(
                f"not run: {', '.join(not_run)}; apt-get install netcat-openbsd socat"
            )
        self.assertGreaterEqual(ran, 8)

    def missing_programs(self, example: Example) -> str:
        for program in ("nc", "socat"):
            used = example.language in SHELL and re.search(rf"\b{program}\b", example.text)
            if used and shutil.which(program) is None:
                return program
        return ""

    def run_example(self, example: Example, shell: str, folder: Path, port: int) -> str:
        """Run one example; what went wrong, or ``""``."""
        text = example.text.replace(str(PORT), str(port)) if port != PORT else example.text
        environ = {
            **os.environ,
            "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(SOURCE_ROOT),
            "HOME": str(folder / "home"),
        }
        environ.pop("NO_COLOR", None)
        if port != PORT:
            environ["DPMCTL_CONNECT"] = f"tcp:127.0.0.1:{port}"
        if example.language == "python":
            parts = [(text, None)]
        elif example.language == "console":
            parts = [(command, shown) for command, shown in console_parts(text)]
        else:
            parts = [(text, None)]
        for command, shown in parts:
            argv = (
                [sys.executable, "-c", command]
                if example.language == "python"
                else [shell, "-e", "-o", "pipefail", "-c", command]
            )
            try:
                result = subprocess.run(
                    argv, cwd=folder, env=environ, capture_output=True, text=True, timeout=TIMEOUT
                )
            except subprocess.TimeoutExpired:
                return f"did not end within {TIMEOUT} s: {command.strip()[:120]!r}"
            if result.returncode != 0:
                return f"exit status {result.returncode}: {result.stderr.strip()[-500:]!r}"
            if example.language == "python" and re.search(
                r"\b(DaqSubState|DaqState|AlertSeverity)\.", result.stdout
            ):
                return f"prints an enumeration's Python name: {result.stdout!r}"
            if shown is not None:
                problem = self.compare(shown, result.stdout.splitlines())
                if problem:
                    return problem
        return ""

    def compare(self, shown: list[str], actual: list[str]) -> str:
        if len(shown) != len(actual):
            return f"shows {len(shown)} output lines, printed {len(actual)}: {actual!r}"
        for expected, line in zip(shown, actual, strict=True):
            try:
                expected_json = json.loads(expected)
            except ValueError:
                if expected != line:
                    return f"shows {expected!r}, printed {line!r}"
                continue
            try:
                if not same_shape(expected_json, json.loads(line)):
                    return f"shows {expected!r}, printed {line!r} (other members or types)"
            except ValueError:
                return f"shows JSON {expected!r}, printed {line!r}"
        return ""


class ExtractorTests(SynchronousTestCase):
    def test_blocks_markers_and_console_parts(self) -> None:
        document = Path(self.mktemp())
        document.write_text(
            "text\n\n<!-- doc-test: skip: needs root -->\n<!-- other -->\n\n"
            "```sh\nsudo dpmctl exit\n```\n\n```console\n$ echo 1\n1\n$ true\n```\n"
            "```python\nprint(1)\n```\n"
        )
        found = list(examples(document))
        self.assertEqual(
            [(e.language, e.skip, e.talks_to_server) for e in found],
            [("sh", "needs root", True), ("console", None, False), ("python", None, False)],
        )
        self.assertEqual(console_parts(found[1].text), [("echo 1", ["1"]), ("true", [])])

    def test_a_skip_marker_must_say_why_and_stand_before_a_block(self) -> None:
        document = Path(self.mktemp())
        document.write_text("<!-- doc-test: skip: -->\n```sh\nnc -N h 1\n```\n")
        self.assertRaises(AssertionError, list, examples(document))
        document.write_text("<!-- doc-test: skip: why -->\nsome text\n```sh\nnc -N h 1\n```\n")
        self.assertRaises(AssertionError, list, examples(document))

    def test_shapes(self) -> None:
        self.assertTrue(same_shape({"a": 1, "b": [1]}, {"a": 2.5, "b": []}))
        self.assertFalse(same_shape({"a": 1}, {"a": 1, "b": 2}))
        self.assertFalse(same_shape({"a": "x"}, {"a": 1}))
        self.assertFalse(same_shape(True, 1))
