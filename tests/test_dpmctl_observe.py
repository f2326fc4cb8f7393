"""``dpmctl provenance``, ``timeline``, ``check``, ``fsck``, ``checksum`` and the alerts' hints.

The server here is ``tests.cannedpeer``: a real JSON-RPC server on a real
socket in this process answering with canned data shaped as the contract
documents (a legitimate fake of the remote peer; dpmctl's code is all
real), so that each number and line can be checked exactly.
``tests.test_dpmctl_observe_server`` runs the same commands against a real dpmd.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any

from astropy.io import fits
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dpmd.client.cli import run
from dpmd.client.console import Console, UsageProblem
from dpmd.client.models import DaqCheck, Timeline, WorkspaceAudit, card_origins
from dpmd.client.options import build_parser
from dpmd.client.provenance import keyword_view, provenance_table
from dpmd.client.render import alert_hint
from dpmd.client.reports import audit_view, check_view, checksum_view
from dpmd.client.timeline import nearest_rank, parse_date, timeline_view
from dpmd.fitscheck import describe_fits
from dpmd.model import AlertSeverity, DaqAlert, DaqStatus, DaqSubState
from tests.cannedpeer import (
    AUDIT,
    CHECK_BAD,
    CHECK_KNOWN,
    CHECK_OK,
    PROVENANCE,
    T0,
    TIMELINE,
    CannedPeer,
    listen_canned,
)
from tests.test_dpmctl import dpmctl
from tests.test_fitscheck import flip_bit, write_sources

ANSWERS = {
    "/daq/GetDaqProvenance": PROVENANCE,
    "/daq/GetTimeline": TIMELINE,
    "/daq/CheckDaq": CHECK_OK,
    "/dpm/AuditWorkspace": AUDIT,
}


def in_time_zone(test: SynchronousTestCase, zone: str) -> None:
    """Local time is ``zone`` (a POSIX TZ string) until the test ends."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()

    def restore() -> None:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()

    test.addCleanup(restore)


class CannedTestCase(TestCase):
    answers: dict[str, Any] = ANSWERS

    @inlineCallbacks
    def setUp(self) -> Any:
        self.peer: CannedPeer = yield listen_canned(self, self.answers)

    def dpmctl(
        self, *argv: str, stdin: str = "", width: int | None = None
    ) -> Deferred[tuple[int, str, str]]:
        """``dpmctl`` in this process, its output a file (or a terminal ``width`` wide)."""
        options = build_parser({"DPMCTL_CONNECT": self.peer.endpoint}).parse_args(argv)
        out, err = io.StringIO(), io.StringIO()
        console = Console(out, err, options.json, False, width=width)
        finished = ensureDeferred(run(reactor, options, console, io.StringIO(stdin)))
        return finished.addCallback(lambda status: (status, out.getvalue(), err.getvalue()))


class ProvenanceTests(CannedTestCase):
    @inlineCallbacks
    def test_a_table_of_every_card(self) -> Any:
        status, out, err = yield self.dpmctl("provenance", "TEST.1")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(self.peer.requests[0]["params"], {"id": "TEST.1"})
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["KEYWORD", "CARD", "SOURCE", "OVERRODE", "RULE"])
        [simple] = [line for line in lines if line.startswith("SIMPLE ")]
        self.assertEqual(simple.split()[-3:], ["(dpmd-merge)", "-", "-"])
        [obj] = [line for line in lines if line.startswith("OBJECT ")]
        self.assertIn("OBJECT  = 'ocm object'", obj)
        self.assertTrue(obj.endswith("ocm           fcs, dcs  -"), obj)
        [renamed] = [line for line in lines if line.startswith("HIERARCH")]
        self.assertEqual(renamed.split()[-3:], ["fcs", "-", "1"])
        long_index = next(i for i, line in enumerate(lines) if line.startswith("LONGSTR"))
        self.assertIn("CONTINUE  'and ends here'", lines[long_index + 1])  # record by record
        self.assertEqual(len([line for line in lines if line.startswith("HISTORY")]), 2)

    @inlineCallbacks
    def test_on_a_narrow_terminal_each_card_takes_two_lines(self) -> Any:
        status, out, _ = yield self.dpmctl("provenance", "TEST.1", width=60)
        self.assertEqual(status, 0)
        lines = out.splitlines()
        self.assertTrue(all(len(line) <= 60 for line in lines))
        index = lines.index("OBJECT  = 'ocm object'")
        self.assertEqual(lines[index + 1], "  source ocm  rule -  overrode fcs, dcs")

    @inlineCallbacks
    def test_one_keyword_with_its_whole_override_chain(self) -> Any:
        status, out, _ = yield self.dpmctl("provenance", "TEST.1", "object")
        self.assertEqual(status, 0)
        self.assertEqual(
            out.splitlines(),
            [
                "OBJECT  = 'ocm object'",
                "  source    ocm",
                "  rule      -",
                "  overrode  fcs  OBJECT  = 'fcs object'",
                "            dcs  OBJECT  = 'dcs object'",
            ],
        )

    @inlineCallbacks
    def test_keywords_as_astropy_and_eso_spell_them(self) -> Any:
        for spelling in ["HIERARCH ESO INS2 FILT1 NAME", "ESO INS2 FILT1 NAME", "ins2.filt1.name",
                         "INS2  FILT1 NAME"]:  # fmt: skip
            status, out, _ = yield self.dpmctl("provenance", "TEST.1", spelling)
            self.assertEqual(status, 0, spelling)
            self.assertEqual(out.splitlines()[0], "HIERARCH ESO INS2 FILT1 NAME = 'R       '")
            self.assertIn("  rule      1", out.splitlines())

    @inlineCallbacks
    def test_every_card_of_a_repeated_keyword(self) -> Any:
        status, out, _ = yield self.dpmctl("--json", "provenance", "TEST.1", "HISTORY")
        self.assertEqual((status, json.loads(out)), (0, PROVENANCE[4:6]))

    @inlineCallbacks
    def test_json(self) -> Any:
        status, out, _ = yield self.dpmctl("--json", "provenance", "TEST.1")
        self.assertEqual((status, json.loads(out)), (0, PROVENANCE))

    @inlineCallbacks
    def test_a_keyword_the_header_does_not_have(self) -> Any:
        status, out, err = yield self.dpmctl("--json", "provenance", "TEST.1", "EXPTIME")
        self.assertEqual(status, 1)
        message = "the product of TEST.1 has no card 'EXPTIME' in its primary header"
        self.assertEqual(err, f"dpmctl: {message}\n")
        error = {"code": None, "kind": "NoSuchKeyword", "message": message}
        self.assertEqual(json.loads(out), {"error": error})


class TimelineTests(CannedTestCase):
    @inlineCallbacks
    def test_one_line_per_daq_and_a_summary_per_stage(self) -> Any:
        status, out, err = yield self.dpmctl("timeline")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out.splitlines()[0], "4 DAQs (times in UTC)")
        rows = [line.split() for line in out.splitlines()[1:6]]
        self.assertEqual(
            rows,
            [
                ["ID", "SUBSTATE", "QUEUED", "FINISHED", "COLLECTING", "MERGING", "RELEASING"],
                ["NIGHT.1", "Completed", "2026-01-01T00:00:00Z", "00:00:20Z", "2.00s", "2.00s",
                 "50.0", "MiB", "15.0s", "12.0", "MiB"],
                ["NIGHT.2", "Completed", "2026-01-01T00:01:00Z", "01:01:01Z", "1.00s", "4.00s",
                 "80.0", "MiB", "(2", "runs)", "6.00s"],
                ["NIGHT.3", "Aborted", "2026-01-01T00:01:40Z", "00:03:20Z", "1.00s", "10.0s", "-"],
                ["NIGHT.4", "Releasing", "2026-01-01T00:05:00Z", "running", "1.00s", "1.00s",
                 "running"],
            ],
        )  # fmt: skip
        summary = [line.split() for line in out.splitlines()[6:]]
        self.assertEqual(
            summary,
            [
                ["per", "stage:"],
                ["STAGE", "COUNT", "MEDIAN", "P95", "MAX", "RATE", "PEAK"],
                # 2048 + 1024 + 0 bytes in 4 s (NIGHT.4 did not say how many); no child seen
                ["collecting", "4", "1.00s", "2.00s", "2.00s", "768", "B/s", "-"],
                # 16 KiB in 16 s; the largest of 50 and 80 MiB
                ["merging", "4", "3.00s", "10.0s", "10.0s", "1.0", "KiB/s", "80.0", "MiB"],
                ["releasing", "2", "10.5s", "15.0s", "15.0s", "585", "B/s", "12.0", "MiB"],
            ],
        )
        self.assertEqual(
            self.peer.requests[0]["params"], {"since": None, "until": None, "limit": 1000}
        )

    @inlineCallbacks
    def test_json_has_the_answer_and_the_summary(self) -> Any:
        status, out, _ = yield self.dpmctl("--json", "timeline", "--limit", "4")
        self.assertEqual(status, 0)
        printed = json.loads(out)
        self.assertEqual({key: printed[key] for key in ("daqs", "truncated")}, TIMELINE)
        self.assertEqual(
            printed["summary"]["merging"],
            {"count": 4, "median": 3.0, "p95": 10.0, "max": 10.0, "bytes_per_second": 1024.0,
             "max_peak_rss_bytes": 80 << 20},
        )  # fmt: skip
        self.assertIsNone(printed["summary"]["collecting"]["max_peak_rss_bytes"])
        self.assertEqual(printed["summary"]["releasing"]["bytes_per_second"], 12288 / 21)
        self.assertEqual(self.peer.requests[0]["params"]["limit"], 4)

    @inlineCallbacks
    def test_dates_are_local_unless_they_name_a_zone(self) -> Any:
        in_time_zone(self, "CLT+3")  # three hours behind UTC
        status, out, _ = yield self.dpmctl(
            "timeline", "--since", "2026-01-01", "--until", "2026-01-02T06:30:00Z"
        )
        self.assertEqual(status, 0)
        params = self.peer.requests[-1]["params"]
        self.assertEqual((params["since"], params["until"]), (T0 + 3 * 3600, T0 + 30.5 * 3600))
        self.assertIn("since 2026-01-01T03:00:00Z until 2026-01-02T06:30:00Z", out)
        yield self.dpmctl("timeline", "--since", "2026-01-01T22:00+01:00", "--until",
                          "2026-01-01 23:15")  # fmt: skip
        params = self.peer.requests[-1]["params"]
        self.assertEqual((params["since"], params["until"]), (T0 + 21 * 3600, T0 + 26.25 * 3600))

    @inlineCallbacks
    def test_bad_dates_are_usage_errors_found_before_connecting(self) -> Any:
        status, out, err = yield self.dpmctl("--json", "timeline", "--since", "2026-01-01T23:00",
                                             "--until", "2026-01-01T22:00Z")  # fmt: skip
        self.assertEqual(status, 2)
        self.assertIn("--since 2026-01-01T23:00:00Z is after --until 2026-01-01T22:00:00Z", err)
        self.assertEqual(json.loads(out)["error"]["kind"], "UsageError")
        self.assertEqual(self.peer.requests, [])
        parser = build_parser({})
        for argv in (["--since", "last night"], ["--until", "2026-13-01"], ["--limit", "0"]):
            problem = self.assertRaises(UsageProblem, parser.parse_args, ["timeline", *argv])
            self.assertIn(argv[1], str(problem))

    def test_nearest_rank_percentile(self) -> None:
        self.assertEqual(nearest_rank([1.0], 0.95), 1.0)
        self.assertEqual(nearest_rank([float(n) for n in range(1, 21)], 0.95), 19.0)
        self.assertEqual(nearest_rank([float(n) for n in range(1, 101)], 0.95), 95.0)
        self.assertEqual(nearest_rank([1.0, 2.0, 3.0], 0.5), 2.0)

    def test_parse_date(self) -> None:
        in_time_zone(self, "UTC0")
        self.assertEqual(parse_date("2026-01-01"), T0)
        self.assertEqual(parse_date(" 2026-01-01T00:00:01.5Z "), T0 + 1.5)
        self.assertEqual(parse_date("2026-01-01T01:00:00+01:00"), T0)
        self.assertRaises(ValueError, parse_date, "01/01/2026")


class TruncatedTimelineTests(CannedTestCase):
    answers = {"/daq/GetTimeline": {"daqs": TIMELINE["daqs"][:1], "truncated": True}}

    @inlineCallbacks
    def test_a_truncated_answer_says_so(self) -> Any:
        status, out, _ = yield self.dpmctl("timeline", "--limit", "1")
        self.assertEqual(status, 0)
        self.assertIn("(only the first 1 DAQs: give a shorter period or a larger --limit)", out)


class EmptyTimelineTests(CannedTestCase):
    answers = {"/daq/GetTimeline": {"daqs": [], "truncated": False}}

    @inlineCallbacks
    def test_no_daqs(self) -> Any:
        status, out, _ = yield self.dpmctl("timeline", "--until", "2026-01-01T00:00Z")
        self.assertEqual((status, out), (0, "0 DAQs until 2026-01-01T00:00:00Z (times in UTC)\n"))


class CheckTests(CannedTestCase):
    def spec_file(self, text: str = '{"id": "TEST.1"}') -> str:
        path = Path(self.mktemp())
        path.write_text(text)
        return str(path)

    @inlineCallbacks
    def test_a_good_specification(self) -> Any:
        status, out, err = yield self.dpmctl("check", self.spec_file())
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(self.peer.requests[0]["params"], {"specification": '{"id": "TEST.1"}'})
        lines = out.splitlines()
        self.assertEqual(lines[:3], ["ok: nothing found that would stop this DAQ",
                                     "predicted size  74880 bytes (73.1 KiB)",
                                     "planned primary header:"])  # fmt: skip
        self.assertEqual(lines[3].split(), ["KEYWORD", "CARD", "SOURCE", "OVERRODE", "RULE"])
        self.assertEqual(
            [line.split() for line in lines[-3:]],
            [["HDU", "NAME", "SOURCE", "SIZE"], ["0", "PRIMARY", "(dpmd-merge)", "5.6", "KiB"],
             ["1", "CHIP1", "dcs", "67.5", "KiB"]],
        )  # fmt: skip

    @inlineCallbacks
    def test_from_stdin_and_as_json(self) -> Any:
        status, out, _ = yield self.dpmctl("--json", "check", "-", stdin='{"id": "X"}')
        self.assertEqual((status, json.loads(out)), (0, CHECK_OK))
        self.assertEqual(self.peer.requests[0]["params"], {"specification": '{"id": "X"}'})

    @inlineCallbacks
    def test_an_unreadable_specification_is_a_usage_error(self) -> Any:
        status, _, err = yield self.dpmctl("check", "/nonexistent/spec.json")
        self.assertEqual(status, 2)
        self.assertIn("cannot read specification /nonexistent/spec.json", err)
        self.assertEqual(self.peer.requests, [])


class FailedCheckTests(CannedTestCase):
    answers = {"/daq/CheckDaq": CHECK_BAD}

    @inlineCallbacks
    def test_problems_first_and_exit_status_one(self) -> Any:
        status, out, err = yield self.dpmctl("check", "-", stdin="{}")
        self.assertEqual((status, err), (1, ""))
        self.assertEqual(
            out.splitlines()[:3],
            ["2 problems:", "  - source 'dcs': file '/data/dcs.fits' does not exist",
             "  - the product needs about 74880 bytes; the workspace has 0 above its reserve "
             "(1024 free)"],
        )  # fmt: skip
        status, out, _ = yield self.dpmctl("--json", "check", "-", stdin="{}")
        self.assertEqual((status, json.loads(out)), (1, CHECK_BAD))


class KnownIdCheckTests(CannedTestCase):
    answers = {"/daq/CheckDaq": CHECK_KNOWN}

    @inlineCallbacks
    def test_a_note_is_shown_and_is_no_problem(self) -> Any:
        status, out, err = yield self.dpmctl("check", "-", stdin="{}")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out.splitlines()[:2], [
            "ok: nothing found that would stop this DAQ",
            "  note: DAQ id 'TEST.1' is already queued (Scheduled) with this very specification: "
            "QueueDaq would accept it again idempotently and queue nothing new"])  # fmt: skip


class FsckTests(CannedTestCase):
    @inlineCallbacks
    def test_a_problem_left_is_exit_status_one(self) -> Any:
        status, out, err = yield self.dpmctl("fsck", "--repair")
        self.assertEqual((status, err), (1, ""))
        self.assertEqual(self.peer.requests[0]["params"], {"repair": True})
        self.assertEqual(
            [line.split(None, 2)[:2] for line in out.splitlines()[1:3]],
            [["folder-without-record", "/dpm/daqs/STRAY.1"],
             ["product-changed", "/dpm/daqs/TEST.1/TEST.1.fits"]],
        )  # fmt: skip
        self.assertEqual([line.rsplit(None, 1)[1] for line in out.splitlines()[1:3]], ["yes", "no"])
        self.assertIn("  size 10 bytes, recorded 12  ", out.splitlines()[2])
        self.assertEqual(out.splitlines()[3], "2 problems: 1 repaired, 1 left (not safe to "
                         "repair automatically: see each detail)")  # fmt: skip

    @inlineCallbacks
    def test_without_repair_and_as_json(self) -> Any:
        status, out, _ = yield self.dpmctl("--json", "fsck")
        self.assertEqual((status, json.loads(out)), (1, AUDIT))
        self.assertEqual(self.peer.requests[0]["params"], {"repair": False})
        status, out, _ = yield self.dpmctl("fsck")
        self.assertIn("(dpmctl fsck --repair fixes what is safe to fix)", out)


class RepairedFsckTests(CannedTestCase):
    answers = {"/dpm/AuditWorkspace": {"problems": AUDIT["problems"][:1]}}

    @inlineCallbacks
    def test_everything_repaired_is_exit_status_zero(self) -> Any:
        status, out, _ = yield self.dpmctl("fsck", "--repair")
        self.assertEqual(status, 0)
        self.assertEqual(out.splitlines()[-1], "1 problem: 1 repaired, 0 left")


class CleanFsckTests(CannedTestCase):
    answers = {"/dpm/AuditWorkspace": {"problems": []}}

    @inlineCallbacks
    def test_no_problems(self) -> Any:
        status, out, _ = yield self.dpmctl("fsck")
        self.assertEqual((status, out), (0, "no problems found\n"))


def alert(terminal: bool, attempts: int) -> DaqAlert:
    return DaqAlert("MergeError", "merge", AlertSeverity.Error, "merger exited with 4", T0,
                    terminal, attempts)  # fmt: skip


STATUS = DaqStatus(
    "TEST.1",
    "INSTR.1",
    DaqSubState.Merging,
    (alert(True, 2), DaqAlert("StageStalled", "merging", AlertSeverity.Warning, "silent", T0)),
    "merge failed",
    timestamp=T0,
)
STAGES = {
    "collecting": {"attempts": 1, "started_at": T0, "ended_at": T0 + 2.5, "last_error": None},
    "merging": {
        "attempts": 2,
        "started_at": T0 + 100,
        "ended_at": T0 + 101,
        "last_error": "merger exited with 4",
    },
    "releasing": {"attempts": 1, "started_at": T0 + 200, "ended_at": None, "last_error": None},
}


class AlertHintTests(CannedTestCase):
    answers = {
        "/daq/GetDaqStatus": STATUS.to_json(),
        "/daq/GetInternalDaqStatus": {"status": STATUS.to_json(), "detail": {"stages": STAGES}},
    }

    @inlineCallbacks
    def test_status_says_whether_retrying_helps(self) -> Any:
        status, out, _ = yield self.dpmctl("status", "TEST.1")
        self.assertEqual(status, 0)
        self.assertIn(
            "  Error   MergeError[merge]: merger exited with 4 (2 attempts; retry will not help "
            "until the cause is fixed)",
            out.splitlines(),
        )
        self.assertIn("  Warning StageStalled[merging]: silent", out.splitlines())

    @inlineCallbacks
    def test_internal_shows_each_stage(self) -> Any:
        status, out, _ = yield self.dpmctl("internal", "TEST.1")
        self.assertEqual(status, 0)
        lines = out.splitlines()
        start = lines.index("stages:")
        self.assertEqual(
            [line.split(None, 5) for line in lines[start + 1 : start + 5]],
            [["STAGE", "RUNS", "STARTED", "ENDED", "TOOK", "LAST ERROR"],
             ["collecting", "1", "2026-01-01T00:00:00Z", "00:00:02Z", "2.50s", "-"],
             ["merging", "2", "2026-01-01T00:01:40Z", "00:01:41Z", "1.00s",
              "merger exited with 4"],
             ["releasing", "1", "2026-01-01T00:03:20Z", "-", "running", "-"]],
        )  # fmt: skip
        self.assertNotIn('"stages"', out)  # a table, not the JSON of the detail


class HintTextTests(SynchronousTestCase):
    def test_the_three_cases(self) -> None:
        self.assertEqual(alert_hint(alert(False, 1)), "1 attempt; retrying may help")
        self.assertEqual(
            alert_hint(alert(True, 3)), "3 attempts; retry will not help until the cause is fixed"
        )
        # A server that does not say (or an alert about no stage's run): nothing claimed.
        self.assertEqual(alert_hint(alert(False, 0)), "")
        warning = DaqAlert("StorageLow", "workspace", AlertSeverity.Warning, "low", T0, True, 2)
        self.assertEqual(alert_hint(warning), "")


class ChecksumTests(TestCase):
    """``dpmctl checksum`` needs no server: the endpoint here has none."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.good = write_sources(self.directory / "good.fits")
        self.bad = write_sources(self.directory / "bad.fits")
        with fits.open(self.bad) as hdus:
            flip_bit(self.bad, hdus[2].fileinfo()["datLoc"] + 8)

    def dpmctl(self, *argv: str) -> Deferred[tuple[int, str, str]]:
        options = build_parser({"DPMCTL_CONNECT": "tcp:127.0.0.1:1"}).parse_args(argv)
        out, err = io.StringIO(), io.StringIO()
        console = Console(out, err, options.json, False)
        finished = ensureDeferred(run(reactor, options, console, io.StringIO()))
        return finished.addCallback(lambda status: (status, out.getvalue(), err.getvalue()))

    @inlineCallbacks
    def test_a_good_file(self) -> Any:
        status, out, err = yield self.dpmctl("checksum", str(self.good))
        self.assertEqual((status, err), (0, ""))
        lines = out.splitlines()
        size = self.good.stat().st_size
        digest = hashlib.blake2b(self.good.read_bytes()).hexdigest()
        self.assertEqual(lines[:3], [str(self.good), f"  size     {size} bytes (953.4 KiB)",
                                     f"  blake2b  {digest}"])  # fmt: skip
        self.assertEqual(lines[3].split(), ["HDU", "CHECKSUM", "VERIFIES", "DATASUM", "VERIFIES"])
        self.assertEqual([line.split()[2::2] for line in lines[4:]], [["yes", "yes"]] * 3)

    @inlineCallbacks
    def test_a_flipped_bit_is_exit_status_one(self) -> Any:
        status, out, err = yield self.dpmctl("checksum", str(self.good), str(self.bad))
        self.assertEqual(status, 1)
        self.assertEqual(
            err,
            f"dpmctl: {self.bad}: HDU 2: CHECKSUM does not verify\n"
            f"dpmctl: {self.bad}: HDU 2: DATASUM does not verify\n",
        )
        self.assertEqual(out.splitlines()[-1].split()[2::2], ["NO", "NO"])

    @inlineCallbacks
    def test_json_and_files_that_cannot_be_described(self) -> Any:
        text = self.directory / "notes.txt"
        text.write_text("not FITS\n")
        missing = self.directory / "none.fits"
        status, out, err = yield self.dpmctl("--json", "checksum", str(self.good), str(text),
                                             str(missing))  # fmt: skip
        self.assertEqual(status, 1)
        good, not_fits, absent = json.loads(out)
        self.assertEqual(good, {"path": str(self.good), **describe_fits(self.good)})
        self.assertEqual(not_fits["path"], str(text))
        self.assertIn("not a FITS file", not_fits["error"])
        self.assertEqual(absent, {"path": str(missing),
                                  "error": f"{missing}: No such file or directory"})  # fmt: skip
        self.assertIn(f"dpmctl: {missing}: No such file or directory\n", err)

    @inlineCallbacks
    def test_the_real_command_needs_no_server(self) -> Any:
        out, err, status = yield dpmctl(
            "--json", "checksum", str(self.good), environ={"DPMCTL_CONNECT": "tcp:127.0.0.1:1"}
        )
        self.assertEqual((status, err), (0, b""))
        [described] = json.loads(out)
        self.assertTrue(all(hdu["checksum_ok"] for hdu in described["hdus"]))


class WidthTests(SynchronousTestCase):
    """Every view fits the terminal: wide tables turn into stacked rows, or their cells wrap."""

    def views(self) -> list[Any]:
        timeline = Timeline.from_json(TIMELINE)
        origins = card_origins(PROVENANCE)
        facts = {"size": 5760, "blake2b": "ab" * 64,
                 "hdus": [{"index": 0, "checksum": "9HEGGE9F9ECFGE9F", "datasum": "0",
                           "checksum_ok": True, "datasum_ok": False}]}  # fmt: skip
        return [
            timeline_view(timeline, T0, T0 + 86400, 1000),
            provenance_table(origins),
            keyword_view(origins[1:2]),
            check_view(DaqCheck.from_json(CHECK_OK)),
            check_view(DaqCheck.from_json(CHECK_BAD)),
            check_view(DaqCheck.from_json(CHECK_KNOWN)),
            audit_view(WorkspaceAudit.from_json(AUDIT), repair=False),
            checksum_view("/data/" + "p" * 90 + ".fits", facts),
        ]

    def shown(self, view: Any, width: int) -> list[str]:
        out = io.StringIO()
        Console(out, io.StringIO(), False, False, width=width).print(view)
        return out.getvalue().splitlines()

    def test_nothing_is_wider_than_the_terminal(self) -> None:
        for width in (40, 80, 200):
            for view in self.views():
                for line in self.shown(view, width):
                    self.assertLessEqual(len(line), width, (width, line))

    def test_a_narrow_timeline_lists_each_daq_on_three_lines(self) -> None:
        lines = self.shown(timeline_view(Timeline.from_json(TIMELINE), None, None, 1000), 60)
        index = lines.index("NIGHT.2")
        self.assertEqual(
            [line.rstrip() for line in lines[index + 1 : index + 4]],
            ["  Completed  2026-01-01T00:01:00Z → 01:01:01Z",
             "  collecting 1.00s  merging 4.00s 80.0 MiB (2 runs)",
             "  releasing 6.00s"],
        )  # fmt: skip
