"""``dpmctl``: command lines, output styles and exit statuses."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

import dpmd
from dpmd.client.cli import Context, execute, main, read_specification, run
from dpmd.client.console import Console, UsageProblem
from dpmd.client.endpoints import DEFAULT_ENDPOINT
from dpmd.client.options import build_parser
from dpmd.model import AlertSeverity, DaqAlert, DaqStatus, DaqSubState, StorageStatus
from tests.test_client_support import FakeServer, short_directory, start_server, tcp_endpoint
from tests.test_twistd import twistd
from tests.waiting import block_for_file, wait_until

SOURCE_ROOT = str(Path(dpmd.__file__).parent.parent)
T0 = 1767225600.0  # 2026-01-01T00:00:00Z
STATUS = DaqStatus(
    "TEST.1",
    "INSTR.1",
    DaqSubState.Merging,
    (DaqAlert("MergeError", "", AlertSeverity.Error, "merger exited with status 4", T0),),
    "merge failed",
    "",
    T0,
)
STORAGE = StorageStatus("/data/dpm", 4 * 1024**3, 3 * 1024**3, 2 * 1024**3, T0)


def daq_exception(message: str, daq_id: str) -> dict[str, Any]:
    data = {"exception": "DaqException", "id": daq_id, "message": message}
    return {"code": -32000, "message": message, "data": data}


class ParserTests(SynchronousTestCase):
    def parse(self, *argv: str, environ: dict[str, str] | None = None) -> Any:
        return build_parser(environ or {}).parse_args(argv)

    def test_endpoint_from_option_environment_or_default(self) -> None:
        self.assertEqual(self.parse("storage").connect, DEFAULT_ENDPOINT)
        environ = {"DPMCTL_CONNECT": "unix:/run/dpm.sock"}
        self.assertEqual(self.parse("storage", environ=environ).connect, "unix:/run/dpm.sock")
        self.assertEqual(
            self.parse("--connect", "tcp:h:1", "storage", environ=environ).connect, "tcp:h:1"
        )

    def test_options_before_or_after_the_command(self) -> None:
        for argv in [
            ("--json", "--connect", "tcp:h:1", "status", "A"),
            ("status", "A", "--json", "--connect", "tcp:h:1"),
            ("--connect", "tcp:other:2", "status", "--json", "A", "--connect", "tcp:h:1"),
        ]:
            options = self.parse(*argv)
            self.assertEqual((options.json, options.connect, options.id), (True, "tcp:h:1", "A"))
        self.assertFalse(self.parse("status", "A").json)

    def test_usage_errors_are_usage_problems(self) -> None:
        for argv in [
            (),
            ("nonsense",),
            ("status",),
            ("status", "A", "B"),
            ("--bogus", "active"),
            ("--color", "sometimes", "active"),
            ("completion", "fish"),
        ]:
            problem = self.assertRaises(UsageProblem, self.parse, *argv)
            self.assertIn("usage: dpmctl", problem.usage, argv)
        problem = self.assertRaises(UsageProblem, self.parse, "status", "A", "B")
        self.assertEqual(str(problem), "unrecognized arguments: B")

    def test_colour_option_before_or_after_the_command(self) -> None:
        self.assertEqual(self.parse("active").color, "auto")
        self.assertEqual(self.parse("--color", "never", "active").color, "never")
        self.assertEqual(self.parse("active", "--color", "always").color, "always")

    def test_specification_from_a_file_or_stdin(self) -> None:
        path = Path(self.mktemp())
        path.write_text('{"id": "A"}')
        self.assertEqual(read_specification(str(path), io.StringIO()), '{"id": "A"}')
        self.assertEqual(read_specification("-", io.StringIO("{}")), "{}")


class CommandTests(SynchronousTestCase):
    """Each command's requests and output, with the test playing the server."""

    def command(self, *argv: str, as_json: bool = False, terminal: bool = False) -> Deferred[int]:
        self.server = FakeServer()
        self.out, self.err = io.StringIO(), io.StringIO()
        options = build_parser({}).parse_args(argv)
        clock = Clock()
        clock.advance(T0 + 65)
        console = Console(self.out, self.err, as_json, terminal)
        specification = '{"id": "TEST.1"}' if options.command == "queue" else None
        return ensureDeferred(
            execute(Context(self.server.client, options, console, clock, specification))
        )

    def test_queue(self) -> None:
        done = self.command("queue", "spec.json")
        request = self.server.reply({"id": "TEST.1", "error": False})
        self.assertEqual(request["params"], {"specification": '{"id": "TEST.1"}'})
        self.assertEqual(self.successResultOf(done), 0)
        self.assertEqual(self.out.getvalue(), "queued TEST.1\n")
        done = self.command("--json", "queue", "spec.json", as_json=True)
        self.server.reply({"id": "TEST.1", "error": True})
        self.assertEqual(self.successResultOf(done), 0)
        self.assertEqual(json.loads(self.out.getvalue()), {"id": "TEST.1", "error": True})

    def test_refused_command_is_exit_status_one(self) -> None:
        done = self.command("queue", "spec.json")
        self.server.reply(error=daq_exception("DAQ id 'TEST.1' was queued before", "TEST.1"))
        self.assertEqual(self.successResultOf(done), 1)
        self.assertEqual(self.err.getvalue(), "dpmctl: DAQ id 'TEST.1' was queued before\n")
        self.assertEqual(self.out.getvalue(), "")

    def test_status(self) -> None:
        done = self.command("status", "TEST.1")
        request = self.server.reply(STATUS.to_json())
        self.assertEqual(
            (request["method"], request["params"]), ("/daq/GetDaqStatus", {"id": "TEST.1"})
        )
        self.assertEqual(self.successResultOf(done), 0)
        self.assertIn("message  merge failed", self.out.getvalue())
        self.assertIn("  Error   MergeError: merger exited with status 4", self.out.getvalue())
        done = self.command("--json", "status", "TEST.1", as_json=True)
        self.server.reply(STATUS.to_json())
        self.successResultOf(done)
        self.assertEqual(json.loads(self.out.getvalue()), STATUS.to_json())

    def test_status_in_colour_on_a_terminal(self) -> None:
        done = self.command("status", "TEST.1", terminal=True)
        self.server.reply(STATUS.to_json())
        self.successResultOf(done)
        self.assertIn("\x1b[1;31mError  \x1b[0m MergeError", self.out.getvalue())

    def test_status_of_an_archived_daq_from_an_older_server(self) -> None:
        final = DaqStatus("TEST.1", "INSTR.1", DaqSubState.Completed, result="/r/I.fits")
        done = self.command("status", "TEST.1")
        refusal = daq_exception("DAQ 'TEST.1' is finished and archived", "TEST.1")
        self.assertEqual(self.server.reply(error=refusal)["method"], "/daq/GetDaqStatus")
        fallback = self.server.reply({"status": final.to_json(), "detail": {"archived": True}})
        self.assertEqual(fallback["method"], "/daq/GetInternalDaqStatus")
        self.assertEqual(self.successResultOf(done), 0)
        self.assertIn("state    StateCompleted / Completed (archived)", self.out.getvalue())
        self.assertIn("result   /r/I.fits", self.out.getvalue())
        done = self.command("--json", "status", "TEST.1", as_json=True)
        self.server.reply(error=refusal)
        self.server.reply({"status": final.to_json(), "detail": {"archived": True}})
        self.successResultOf(done)
        self.assertEqual(json.loads(self.out.getvalue()), final.to_json())

    def test_status_of_an_unknown_daq_is_not_retried(self) -> None:
        done = self.command("status", "NOPE")
        self.server.reply(error=daq_exception("unknown DAQ id 'NOPE'", "NOPE"))
        self.assertEqual(self.successResultOf(done), 1)
        self.assertEqual(self.server.requests(), [])

    def test_internal(self) -> None:
        detail = {"queued_at": T0, "workspace": "/dpm/TEST.1", "progress": None, "sources": []}
        done = self.command("internal", "TEST.1")
        request = self.server.reply({"status": STATUS.to_json(), "detail": detail})
        self.assertEqual(request["method"], "/daq/GetInternalDaqStatus")
        self.assertEqual(self.successResultOf(done), 0)
        self.assertIn("workspace  /dpm/TEST.1", self.out.getvalue())
        done = self.command("--json", "internal", "TEST.1", as_json=True)
        self.server.reply({"status": STATUS.to_json(), "detail": detail})
        self.successResultOf(done)
        self.assertEqual(json.loads(self.out.getvalue())["detail"], detail)

    def test_active(self) -> None:
        done = self.command("active")
        other = DaqStatus("TEST.2", "INSTR.2", DaqSubState.Scheduled, timestamp=T0)
        self.server.reply([STATUS.to_json(), other.to_json()])
        step = {"stage": "merging", "done": 2, "total": 3, "unit": "hdus"}
        first = self.server.reply({"status": STATUS.to_json(), "detail": {"progress": step}})
        second = self.server.reply({"status": other.to_json(), "detail": {"queued_at": T0 + 60}})
        self.assertEqual([first["params"], second["params"]], [{"id": "TEST.1"}, {"id": "TEST.2"}])
        self.assertEqual(self.successResultOf(done), 0)
        self.assertEqual(
            self.out.getvalue().splitlines(),
            [
                "ID      SUBSTATE   ERROR  PROGRESS                  AGE",
                "TEST.1  Merging    yes    merging 2/3 hdus (66.7%)  1m05s",
                "TEST.2  Scheduled  -      -                         5s",
            ],
        )
        done = self.command("--json", "active", as_json=True)
        self.server.reply([STATUS.to_json()])
        self.successResultOf(done)  # no second round of questions for JSON
        self.assertEqual(json.loads(self.out.getvalue()), [STATUS.to_json()])

    def test_active_reports_a_failed_detail_question_like_any_other(self) -> None:
        done = self.command("active")
        self.server.reply([STATUS.to_json()])
        self.server.reply(error=daq_exception("unknown DAQ id 'TEST.1'", "TEST.1"))
        self.assertEqual(self.successResultOf(done), 1)
        self.assertEqual(self.err.getvalue(), "dpmctl: unknown DAQ id 'TEST.1'\n")

    def test_abort_and_retry(self) -> None:
        done = self.command("abort", "TEST.1")
        request = self.server.reply({"id": "TEST.1", "error": False})
        self.assertEqual(
            (request["method"], request["params"]), ("/daq/AbortDaq", {"id": "TEST.1"})
        )
        self.assertEqual(self.successResultOf(done), 0)
        self.assertEqual(self.out.getvalue(), "aborted TEST.1\n")
        done = self.command("retry", "TEST.1")
        request = self.server.reply(None)
        self.assertEqual(request["method"], "/daq/RetryMergeDaq")
        self.assertEqual(self.successResultOf(done), 0)
        self.assertEqual(self.out.getvalue(), "retrying the merge of TEST.1\n")
        done = self.command("--json", "retry", "TEST.1", as_json=True)
        refusal = daq_exception("DAQ 'TEST.1' is not waiting for a retry", "TEST.1")
        self.server.reply(error=refusal)
        self.assertEqual(self.successResultOf(done), 1)
        self.assertEqual(
            json.loads(self.out.getvalue()),
            {"error": {**refusal, "kind": "DaqException"}},  # and nothing else on stdout
        )
        self.assertEqual(self.err.getvalue(), "dpmctl: DAQ 'TEST.1' is not waiting for a retry\n")

    def test_storage_and_exit(self) -> None:
        done = self.command("storage")
        self.server.reply(STORAGE.to_json())
        self.assertEqual(self.successResultOf(done), 0)
        self.assertIn("available  2.0 GiB (50.0%) to dpmd", self.out.getvalue())
        done = self.command("--json", "exit", as_json=True)
        self.assertEqual(self.server.reply("dpmd is shutting down")["method"], "/dpm/Exit")
        self.assertEqual(self.successResultOf(done), 0)
        self.assertEqual(json.loads(self.out.getvalue()), {"message": "dpmd is shutting down"})

    def test_a_server_bug_is_exit_status_one(self) -> None:
        done = self.command("storage")
        self.server.reply({"path": "/x"})
        self.assertEqual(self.successResultOf(done), 1)
        self.assertIn("the server failed the command", self.err.getvalue())

    def test_every_failure_is_one_json_object_under_json(self) -> None:
        done = self.command("--json", "storage", as_json=True)
        self.server.reply(error={"code": -32603, "message": "internal error", "data": {"i": "ab"}})
        self.assertEqual(self.successResultOf(done), 1)
        self.assertEqual(
            json.loads(self.out.getvalue()),
            {
                "error": {
                    "code": -32603,
                    "kind": "RpcError",
                    "message": "the server failed the command: internal error"
                    " (JSON-RPC error -32603)",
                    "data": {"i": "ab"},
                }
            },
        )
        done = self.command("--json", "storage", as_json=True)
        self.server.reply({"path": "/x"})
        self.successResultOf(done)
        [line] = self.out.getvalue().splitlines()
        self.assertEqual(json.loads(line)["error"]["kind"], "ProtocolError")
        done = self.command("--json", "watch", "TEST.1", as_json=True)
        self.server.reply(None)
        self.server.protocol.connectionLost(Failure(ConnectionError("gone")))
        self.assertEqual(self.successResultOf(done), 3)
        error = json.loads(self.out.getvalue().splitlines()[-1])["error"]
        self.assertEqual((error["kind"], error["code"]), ("ConnectionLost", None))
        self.assertIn("gone", error["message"])

    def test_internal_of_an_archived_daq_says_where_the_product_went(self) -> None:
        detail = {
            "archived": True,
            "workspace": "/dpm/archive/TEST.1",
            "product": "/dpm/in-progress/TEST.1/INSTR.1.fits",
            "released": {
                "0": {"path": "/data/olas/INSTR.1.fits", "how": "link"},
                "1": {"path": "archive-host:/ingest/INSTR.1.fits", "how": "rsync"},
            },
        }
        done = self.command("internal", "TEST.1")
        self.server.reply({"status": STATUS.to_json(), "detail": detail})
        self.successResultOf(done)
        lines = self.out.getvalue().splitlines()
        self.assertIn("released[0]  /data/olas/INSTR.1.fits (link)", lines)
        self.assertIn("released[1]  archive-host:/ingest/INSTR.1.fits (rsync)", lines)
        self.assertNotIn("/dpm/in-progress/TEST.1/INSTR.1.fits", self.out.getvalue())
        done = self.command("internal", "TEST.1")
        self.server.reply({"status": STATUS.to_json(), "detail": {**detail, "archived": False}})
        self.successResultOf(done)
        self.assertIn("product      /dpm/in-progress/TEST.1/INSTR.1.fits", self.out.getvalue())


class RealServerTests(TestCase):
    """``run`` in this process against a real dpmd."""

    def run_dpmctl(self, *argv: str, stdin: str = "") -> Deferred[tuple[int, str, str]]:
        options = build_parser({}).parse_args(argv)
        out, err = io.StringIO(), io.StringIO()
        console = Console(out, err, options.json, False)
        finished = ensureDeferred(run(reactor, options, console, io.StringIO(stdin)))
        return finished.addCallback(lambda status: (status, out.getvalue(), err.getvalue()))

    @inlineCallbacks
    def test_storage(self) -> Any:
        service = start_server(self)
        endpoint = tcp_endpoint(service)
        status, out, err = yield self.run_dpmctl("--connect", endpoint, "storage")
        self.assertEqual((status, err), (0, ""))
        self.assertIn(f"workspace  {service.config.workspace}\n", out)
        self.assertIn("%) to dpmd", out)
        status, out, _ = yield self.run_dpmctl("--connect", endpoint, "--json", "storage")
        self.assertEqual(json.loads(out)["path"], str(service.config.workspace))

    @inlineCallbacks
    def test_interrupted_or_terminated_ends_the_command_quietly_with_130_or_143(self) -> Any:
        service = start_server(self)
        options = build_parser({}).parse_args(["--connect", tcp_endpoint(service), "watch"])
        for signum, expected in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            out, err = io.StringIO(), io.StringIO()
            interrupted: Deferred[int] = Deferred()
            running = ensureDeferred(
                run(reactor, options, Console(out, err, False, False), io.StringIO(), interrupted)
            )
            # Interrupted while it watches: once subscribed, it asks for the DAQs or waits.
            yield wait_until(lambda: service.hub.subscriber_count("/daq/status") == 1,
                             "the subscription")  # fmt: skip
            self.assertNoResult(running)
            interrupted.callback(signum)
            status = yield running
            self.assertEqual(status, expected)
            self.assertEqual(out.getvalue(), "")
            self.assertNotIn("dpmctl:", err.getvalue())  # at most the line saying what it watches
            yield wait_until(lambda: service.hub.subscriber_count("/daq/status") == 0,
                             "the first watch's subscription to end")  # fmt: skip

    @inlineCallbacks
    def test_cannot_connect_is_exit_status_three(self) -> Any:
        service = start_server(self)
        endpoint = tcp_endpoint(service)
        yield service.ports[0].stopListening()
        status, out, err = yield self.run_dpmctl("--connect", endpoint, "storage")
        self.assertEqual((status, out), (3, ""))
        self.assertIn(f"cannot connect to {endpoint}", err)
        self.assertIn("twistd --nodaemon --pidfile= dpmd", err)
        self.assertIn("DPMCTL_CONNECT", err)
        missing = f"unix:{short_directory(self)}/dpm.sock"
        status, _, err = yield self.run_dpmctl("--connect", missing, "storage")
        self.assertEqual(status, 3)
        self.assertIn("--listen unix:PATH", err)
        status, _, err = yield self.run_dpmctl("--connect", "tls:localhost:1", "storage")
        self.assertEqual(status, 3)
        self.assertIn("trustRoots", err)

    @inlineCallbacks
    def test_usage_problems_are_found_before_connecting(self) -> Any:
        service = start_server(self)
        endpoint = tcp_endpoint(service)
        yield service.ports[0].stopListening()  # nobody to connect to: the problem comes first
        status, _, err = yield self.run_dpmctl("--connect", endpoint, "queue", "/nonexistent.json")
        self.assertEqual(status, 2)
        self.assertIn("cannot read specification /nonexistent.json", err)
        status, _, err = yield self.run_dpmctl("--connect", "tcp:localhost", "storage")
        self.assertEqual(status, 2)
        self.assertIn("missing port", err)


def dpmctl(*argv: str, environ: dict[str, str] | None = None) -> Deferred[tuple[bytes, bytes, int]]:
    """The real console script as a child process (``main`` and its exit status)."""
    return getProcessOutputAndValue(
        sys.executable,
        ["-c", "from dpmd.client.cli import main; main()", *argv],
        env={**os.environ, "PYTHONPATH": SOURCE_ROOT, **(environ or {})},
        reactor=reactor,
    )


class ProcessTests(TestCase):
    @inlineCallbacks
    def test_exit_statuses_of_the_real_command(self) -> Any:
        service = start_server(self)
        endpoint = tcp_endpoint(service)
        out, err, status = yield dpmctl("--json", "storage", environ={"DPMCTL_CONNECT": endpoint})
        self.assertEqual((status, err), (0, b""))
        self.assertEqual(json.loads(out)["path"], str(service.config.workspace))
        out, err, status = yield dpmctl("--connect", endpoint, "frobnicate")
        self.assertEqual((status, out), (2, b""))
        self.assertIn(b"invalid choice: 'frobnicate'", err)
        yield service.ports[0].stopListening()
        out, err, status = yield dpmctl("--connect", endpoint, "storage")
        self.assertEqual((status, out), (3, b""))
        self.assertIn(f"cannot connect to {endpoint}".encode(), err)

    @inlineCallbacks
    def test_exit_stops_a_running_server(self) -> Any:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        path = short_directory(self) / "dpm.sock"
        server = twistd(directory, "--listen", f"unix:{path}")
        self.addCleanup(lambda: server.poll() is None and server.kill())
        self.addCleanup(server.communicate)
        block_for_file(path, server)
        out, err, status = yield dpmctl("--connect", f"unix:{path}", "exit")
        self.assertEqual((status, out, err), (0, b"dpmd is shutting down\n", b""))
        self.assertEqual(server.wait(timeout=30), 0)


def main_output(test: SynchronousTestCase, *argv: str) -> tuple[int, str, str]:
    """``dpmctl ARGV`` for what it does before it connects: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    test.patch(sys, "stdout", out)
    test.patch(sys, "stderr", err)
    exit = test.assertRaises(SystemExit, main, list(argv))
    return exit.code, out.getvalue(), err.getvalue()


def completion_script(test: SynchronousTestCase, shell: str) -> str:
    out = io.StringIO()
    options = build_parser({}).parse_args(["completion", shell])
    console = Console(out, io.StringIO(), False, False)
    status = test.successResultOf(ensureDeferred(run(None, options, console, io.StringIO())))
    test.assertEqual(status, 0)
    return out.getvalue()


class CommandLineTests(SynchronousTestCase):
    """What the command does before it connects: version, usage errors, help, completion."""

    def test_version(self) -> None:
        self.assertEqual(main_output(self, "--version"), (0, f"dpmctl {dpmd.__version__}\n", ""))

    def test_usage_error_under_json_is_a_json_object_too(self) -> None:
        status, out, err = main_output(self, "--json", "status")
        self.assertEqual(status, 2)
        self.assertEqual(
            json.loads(out),
            {
                "error": {
                    "code": None,
                    "kind": "UsageError",
                    "message": "the following arguments are required: ID",
                }
            },
        )
        self.assertIn("usage: dpmctl status", err)
        status, out, err = main_output(self, "status")
        self.assertEqual((status, out), (2, ""))
        self.assertIn("dpmctl: the following arguments are required: ID", err)

    def test_help_says_where_the_shipped_files_are(self) -> None:
        status, out, _ = main_output(self, "--help")
        self.assertEqual(status, 0)
        etc = Path(dpmd.__file__).parent / "etc"
        self.assertIn(f"\n  {etc}\n", out)
        for name in ("dpmd.yaml", "dpmd.service", "grafana-dpmd.json"):
            self.assertIn(name, out)
            self.assertTrue((etc / name).is_file(), name)
        self.assertIn("143 stopped by SIGTERM", " ".join(out.split()))

    def test_bash_completion(self) -> None:
        bash = shutil.which("bash")
        if bash is None:
            raise self.skipTest("bash is not installed")
        path = Path(self.mktemp())
        path.write_text(completion_script(self, "bash"))

        def complete(*words: str) -> list[str]:
            """What bash offers for the last of ``words`` after ``dpmctl``."""
            line = " ".join(["dpmctl", *words])
            program = (
                f"source {path}; COMP_WORDS=(dpmctl {' '.join(repr(w) for w in words)});"
                f" COMP_CWORD={len(words)}; COMP_LINE={line!r}; COMP_POINT={len(line)};"
                ' _shtab_dpmctl; printf "%s\\n" "${COMPREPLY[@]}"'
            )
            result = subprocess.run(
                [bash, "--norc", "-c", program], capture_output=True, text=True, timeout=30
            )
            self.assertEqual(result.stderr, "")
            return sorted(result.stdout.split())

        self.assertEqual(complete("st"), ["status", "storage"])
        self.assertIn("--color", complete("watch", "--c"))
        self.assertEqual(complete("completion", ""), ["bash", "zsh"])
        self.assertEqual(complete("spec", ""), ["new", "schema"])
        self.assertEqual(complete("--color", ""), ["always", "auto", "never"])

    def test_zsh_completion(self) -> None:
        zsh = shutil.which("zsh")
        if zsh is None:
            raise self.skipTest("zsh is not installed (apt-get install zsh)")
        functions = Path(self.mktemp())
        functions.mkdir()
        (functions / "_dpmctl").write_text(
            completion_script(self, "zsh")
        )  # the documented place: a directory of $fpath
        # An interactive zsh in a pseudo-terminal (zpty) is sent "dpmctl sta" and a TAB.
        driver = f"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "fpath=({functions} \\$fpath); autoload -U compinit; PS1='> '"
zpty -w z "compinit -u -d {functions}/.zcompdump"
zpty -w -n z $'dpmctl sta\\t'
out=""
for i in {{1..200}}; do
  zpty -r -t z chunk && out+=$chunk
  [[ $out == *"dpmctl status"* ]] && break
  sleep 0.05
done
zpty -d z
print -r -- $out
"""
        result = subprocess.run(
            [zsh, "-f", "-c", driver], capture_output=True, text=True, timeout=60
        )
        self.assertIn("dpmctl status", result.stdout)
