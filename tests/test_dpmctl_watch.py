"""``dpmctl watch`` logic on a fake wire and a fake clock: every stage, every style."""

from __future__ import annotations

import io
import json
from argparse import Namespace
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from dpmd.client.cli import Context, execute
from dpmd.client.console import Console
from dpmd.client.watch import Watcher, WatchView
from dpmd.model import AlertSeverity, DaqAlert, DaqStatus, DaqSubState
from tests.test_client_support import ENDPOINT, FakeServer, screen_text

T0 = 1767225600.0  # 2026-01-01T00:00:00Z
WAITING = "waiting for a merge slot (2 of limits.merge = 2 in use)"
ALERT = DaqAlert("SourceFileCollectionError", "fcs", AlertSeverity.Error, "host unreachable", T0)


def status(substate: DaqSubState, at: float, *alerts: DaqAlert, **fields: Any) -> dict[str, Any]:
    return DaqStatus(
        **{"id": "TEST.1", "file_id": "INSTR.1", "substate": substate, "alerts": alerts, **fields},
        timestamp=T0 + at,
    ).to_json()


def progress(stage: str, done: int, total: int, unit: str = "bytes") -> dict[str, Any]:
    return {"stage": stage, "done": done, "total": total, "unit": unit}


def internal(substate: DaqSubState, at: float, step: dict[str, Any] | None) -> dict[str, Any]:
    return {"status": status(substate, at), "detail": {"progress": step}}


class WatchScenario(SynchronousTestCase):
    """A watch of TEST.1 started against a fake server; the test plays the server."""

    terminal = False
    colour: bool | None = None
    as_json = False
    width = 80
    daq_id = "TEST.1"

    def setUp(self) -> None:
        self.server = FakeServer()
        self.clock = Clock()
        self.clock.advance(T0)
        self.out = io.StringIO()
        self.err = io.StringIO()
        console = Console(self.out, self.err, self.as_json, self.terminal, self.colour, self.width)
        options = Namespace(command="watch", id=self.daq_id)
        self.exit_status = ensureDeferred(
            execute(Context(self.server.client, options, console, self.clock, None))
        )

    def start(self, first: dict[str, Any], step: dict[str, Any] | None = None) -> None:
        subscribe = self.server.reply(None)
        self.assertEqual(subscribe["params"], {"topic": "/daq/status"})
        # The internal status, since it is given for archived DAQs too.
        query = self.server.reply({"status": first, "detail": {"progress": step}})
        self.assertEqual(
            (query["method"], query["params"]), ("/daq/GetInternalDaqStatus", {"id": first["id"]})
        )

    def notify(self, params: dict[str, Any]) -> None:
        self.server.send({"method": "/daq/status", "params": params})

    def tick(self, answer: dict[str, Any] | None = None) -> None:
        """A second passes; ``answer`` is the expected progress query's reply, if one is due."""
        self.clock.advance(1)
        if answer is None:
            self.assertEqual(self.server.requests(), [])
        else:
            request = self.server.reply(answer)
            self.assertEqual(request["method"], "/daq/GetInternalDaqStatus")
            self.assertEqual(request["params"], {"id": self.daq_id})

    def every_stage(self) -> None:
        self.start(status(DaqSubState.Scheduled, 0))
        self.tick()  # nothing to ask while Scheduled
        self.notify(status(DaqSubState.Collecting, 1, message="collecting 1 file"))
        self.tick(internal(DaqSubState.Collecting, 1, progress("collecting", 0, 4096)))
        self.tick(internal(DaqSubState.Collecting, 1, progress("collecting", 2048, 4096)))
        self.tick(internal(DaqSubState.Collecting, 1, progress("collecting", 2100, 4096)))
        self.notify(status(DaqSubState.Collecting, 4, ALERT))
        self.notify(status(DaqSubState.Collecting, 5, message="collected"))
        self.notify(status(DaqSubState.Merging, 6))
        self.tick(internal(DaqSubState.Merging, 6, progress("merging", 1, 3, "hdus")))
        self.notify(status(DaqSubState.Releasing, 7))
        self.tick()
        self.notify(status(DaqSubState.Completed, 8, result="/released/INSTR.1.fits"))


class PlainWatchTests(WatchScenario):
    def test_every_stage_to_completed(self) -> None:
        self.every_stage()
        self.assertEqual(self.successResultOf(self.exit_status), 0)
        self.assertEqual(
            self.out.getvalue().splitlines(),
            [
                "00:00:00  TEST.1  Scheduled",
                "00:00:01  TEST.1  Collecting  collecting 1 file",
                "00:00:02  TEST.1  collecting 0 B/4.0 KiB (0.0%)",
                "00:00:03  TEST.1  collecting 2.0 KiB/4.0 KiB (50.0%)",
                # 2100 of 4096 is still the same tenth: no line
                "00:00:04  TEST.1  Collecting ERROR",
                "    Error   SourceFileCollectionError[fcs]: host unreachable",
                "00:00:05  TEST.1  Collecting  collected",
                "    cleared SourceFileCollectionError[fcs]",
                "00:00:06  TEST.1  Merging",
                "00:00:05  TEST.1  merging 1/3 hdus (33.3%)",
                "00:00:07  TEST.1  Releasing",
                "00:00:08  TEST.1  Completed",
            ],
        )
        self.clock.advance(5)
        self.assertEqual(self.server.requests(), [])  # polling stopped with the watch

    def test_it_says_what_it_watches_once_subscribed(self) -> None:
        self.server.reply(None)
        watching = f"watching DAQ TEST.1 at {ENDPOINT}; Ctrl-C to stop\n"
        self.assertEqual(self.err.getvalue(), watching)
        self.assertEqual(self.out.getvalue(), "")  # stdout is the watch's own, for pipes

    def test_a_merge_waiting_for_a_slot_says_why_and_no_empty_amount(self) -> None:
        self.start(status(DaqSubState.Merging, 0), progress(WAITING, 0, 0, "files"))
        self.tick(internal(DaqSubState.Merging, 0, progress("checking the sources", 0, 2, "files")))
        self.tick(internal(DaqSubState.Merging, 0, progress("writing", 0, 0)))
        self.assertEqual(
            self.out.getvalue().splitlines(),
            [
                "00:00:00  TEST.1  Merging",
                f"00:00:00  TEST.1  {WAITING}",
                "00:00:01  TEST.1  checking the sources 0/2 files (0.0%)",
                "00:00:02  TEST.1  writing",
            ],
        )

    def test_aborted_is_exit_status_one(self) -> None:
        self.start(status(DaqSubState.Merging, 0))
        self.notify(status(DaqSubState.Aborting, 1))
        self.notify(status(DaqSubState.Aborted, 2))
        self.assertEqual(self.successResultOf(self.exit_status), 1)

    def test_a_final_daq_ends_the_watch_at_once(self) -> None:
        self.start(status(DaqSubState.Completed, 0))
        self.assertEqual(self.successResultOf(self.exit_status), 0)
        self.assertEqual(self.out.getvalue(), "00:00:00  TEST.1  Completed\n")

    def test_older_repeated_and_other_statuses_are_skipped(self) -> None:
        subscribe = self.server.reply(None)
        self.assertEqual(subscribe["method"], "Subscribe")
        # Notifications may overtake the answer to the initial query.
        self.notify(status(DaqSubState.Merging, 2))
        self.notify({**status(DaqSubState.Completed, 3), "id": "OTHER"})
        self.server.reply(internal(DaqSubState.Collecting, 1, None))
        self.notify(status(DaqSubState.Merging, 2))
        self.notify(status(DaqSubState.Completed, 3))
        self.assertEqual(self.successResultOf(self.exit_status), 0)
        self.assertEqual(
            self.out.getvalue().splitlines(),
            ["00:00:02  TEST.1  Merging", "00:00:03  TEST.1  Completed"],
        )

    def test_a_change_seen_only_by_the_progress_poll_still_ends_the_watch(self) -> None:
        self.start(status(DaqSubState.Collecting, 0), progress("collecting", 0, 4096))
        self.tick(internal(DaqSubState.Collecting, 0, progress("collecting", 4096, 4096)))
        self.assertNoResult(self.exit_status)
        self.tick(internal(DaqSubState.Completed, 3, None))  # its notification never came
        self.assertEqual(self.successResultOf(self.exit_status), 0)
        self.assertEqual(self.out.getvalue().splitlines()[-1], "00:00:03  TEST.1  Completed")

    def test_progress_comes_with_the_first_answer_then_once_at_a_time(self) -> None:
        self.start(status(DaqSubState.Merging, 0), progress("merging", 0, 2, "hdus"))
        self.assertEqual(
            self.out.getvalue().splitlines()[-1], "00:00:00  TEST.1  merging 0/2 hdus (0.0%)"
        )
        self.assertEqual(self.server.requests(), [])  # no second question at once
        self.clock.advance(1)
        self.clock.advance(1)
        [query] = self.server.requests()  # the first is not answered yet: no second one
        self.assertEqual(query["method"], "/daq/GetInternalDaqStatus")

    def test_unknown_daq_is_exit_status_one(self) -> None:
        self.server.reply(None)
        data = {"exception": "DaqException", "id": "TEST.1", "message": "unknown DAQ id 'TEST.1'"}
        self.server.reply(error={"code": -32000, "message": data["message"], "data": data})
        self.assertEqual(self.successResultOf(self.exit_status), 1)
        self.assertEqual(self.err.getvalue().splitlines()[-1], "dpmctl: unknown DAQ id 'TEST.1'")

    def test_lost_connection_is_exit_status_three(self) -> None:
        self.start(status(DaqSubState.Merging, 0))
        self.server.protocol.connectionLost(Failure(ConnectionError("server went away")))
        self.assertEqual(self.successResultOf(self.exit_status), 3)
        self.assertIn("server went away", self.err.getvalue())
        self.clock.advance(5)  # the poller is stopped

    def test_the_server_failing_is_exit_status_one(self) -> None:
        self.server.reply(error={"code": -32603, "message": "internal error (incident ab12)"})
        self.assertEqual(self.successResultOf(self.exit_status), 1)
        self.assertIn("incident ab12", self.err.getvalue())


def bar_row(line: str, daq_id: str, share: str, detail: str) -> tuple[int, float]:
    """A live progress row (``ID  BAR  25.0%  DETAIL``): its bar's width and filled part.

    Without colour the bar's unfilled part is blank, so the fill is counted
    in the bar's cells: whole ``━`` and the half ``╸``.
    """
    tail = f" {share:>6}  {detail}"
    if not (line.startswith(f"{daq_id}  ") and line.endswith(tail)):
        raise AssertionError(f"not a progress row of {daq_id} ending {tail!r}: {line!r}")
    bar = line[len(daq_id) + 2 : len(line) - len(tail)]
    return len(bar), (bar.count("━") + 0.5 * bar.count("╸")) / len(bar)


class AlertHintWatchTests(WatchScenario):
    """Each Error alert says how often its stage ran and whether retrying can help."""

    width = 200

    def test_shown_again_when_that_changes(self) -> None:
        def failed(attempts: int, terminal: bool) -> DaqAlert:
            return DaqAlert("MergeError", "merge", AlertSeverity.Error, "merger exited with 5",
                            T0, terminal, attempts)  # fmt: skip

        self.start(status(DaqSubState.Merging, 0, failed(1, False)))
        self.notify(status(DaqSubState.Merging, 1, failed(1, False), message="retried"))
        self.notify(status(DaqSubState.Merging, 2, failed(2, True)))  # the same text, run twice
        self.notify(status(DaqSubState.Aborted, 3))
        self.assertEqual(
            self.out.getvalue().splitlines(),
            [
                "00:00:00  TEST.1  Merging ERROR",
                "    Error   MergeError[merge]: merger exited with 5 (1 attempt; retrying may "
                "help)",
                "00:00:01  TEST.1  Merging ERROR  retried",
                "00:00:02  TEST.1  Merging ERROR",
                "    Error   MergeError[merge]: merger exited with 5 (2 attempts; retry will not "
                "help until the cause is fixed)",
                "00:00:03  TEST.1  Aborted",
                "    cleared MergeError[merge]",
            ],
        )


class TerminalWatchTests(WatchScenario):
    terminal = True
    colour = False

    def test_a_live_bar_below_the_events_and_nothing_stale(self) -> None:
        self.start(status(DaqSubState.Collecting, 0))
        self.tick(internal(DaqSubState.Collecting, 0, progress("collecting", 1024, 4096)))
        first, bar = screen_text(self.out.getvalue(), 80)
        self.assertEqual(first, "00:00:00  TEST.1  Collecting")
        width, filled = bar_row(bar, "TEST.1", "25.0%", "collecting 1.0 KiB/4.0 KiB")
        self.assertEqual((width, len(bar)), (36, 79))  # the last column stays free
        self.assertAlmostEqual(filled, 0.25, delta=1 / width)
        self.notify(status(DaqSubState.Collecting, 2, ALERT))
        self.tick(internal(DaqSubState.Collecting, 2, progress("collecting", 3072, 4096)))
        shown = screen_text(self.out.getvalue(), 80)
        self.assertEqual(
            shown[:3],
            [
                "00:00:00  TEST.1  Collecting",
                "00:00:02  TEST.1  Collecting ERROR",
                "    Error   SourceFileCollectionError[fcs]: host unreachable",
            ],
        )
        [bar] = shown[3:]  # one bar, redrawn in place
        self.assertAlmostEqual(
            bar_row(bar, "TEST.1", "75.0%", "collecting 3.0 KiB/4.0 KiB")[1], 0.75, delta=0.03
        )
        self.notify(status(DaqSubState.Completed, 4))
        self.assertEqual(self.successResultOf(self.exit_status), 0)
        self.assertEqual(
            screen_text(self.out.getvalue(), 80),
            [
                "00:00:00  TEST.1  Collecting",
                "00:00:02  TEST.1  Collecting ERROR",
                "    Error   SourceFileCollectionError[fcs]: host unreachable",
                "00:00:04  TEST.1  Completed",
                "    cleared SourceFileCollectionError[fcs]",
            ],
        )  # the bar is gone, and nothing of it is left behind
        output = self.out.getvalue()
        self.assertNotIn("\x1b[3", output)  # no colour was asked for
        self.assertTrue(output.endswith("\x1b[?25h"))  # the cursor is shown again

    def test_a_merge_waiting_for_a_slot_is_a_row_of_text_without_a_bar(self) -> None:
        self.start(status(DaqSubState.Merging, 0), progress(WAITING, 0, 0, "files"))
        self.assertEqual(
            screen_text(self.out.getvalue(), 80),
            ["00:00:00  TEST.1  Merging", f"TEST.1  {WAITING}"],
        )
        self.notify(status(DaqSubState.Completed, 1))
        self.assertEqual(self.successResultOf(self.exit_status), 0)


class NarrowAndWideTerminalTests(WatchScenario):
    """The same watch at 40 and 200 columns: rows that fit, and nothing stale at the end."""

    terminal = True
    colour = False
    ID = daq_id = "DEMO.2026-01-01T12:00:00.000"

    def setUp(self) -> None:
        pass  # each width below is a watch of its own

    def test_40_and_200_columns(self) -> None:
        for self.width in (40, 200):
            super().setUp()
            first = status(DaqSubState.Collecting, 0, id=self.ID)
            self.start(first)
            step = progress("collecting", 1024, 4096)
            self.tick({"status": first, "detail": {"progress": step}})
            shown = screen_text(self.out.getvalue(), self.width, 40)
            rows = shown[-2:] if self.width == 40 else shown[-1:]
            for row in rows:
                self.assertLess(len(row), self.width, row)
            if self.width == 40:  # too narrow for the id, a bar and the text on one row
                self.assertEqual(rows, [self.ID, "  25.0%  collecting 1.0 KiB/4.0 KiB"])
            else:
                self.assertEqual(
                    bar_row(rows[0], self.ID, "25.0%", "collecting 1.0 KiB/4.0 KiB")[0], 40
                )
            self.notify(status(DaqSubState.Completed, 4, id=self.ID))
            self.assertEqual(self.successResultOf(self.exit_status), 0)
            self.assertEqual(
                screen_text(self.out.getvalue(), self.width, 40),
                screen_text(
                    f"00:00:00  {self.ID}  Collecting\n00:00:04  {self.ID}  Completed\n",
                    self.width,
                    40,
                ),
            )


class ColourWatchTests(WatchScenario):
    terminal = True
    colour = True

    def test_substates_and_alerts_in_colour(self) -> None:
        self.start(status(DaqSubState.Collecting, 0))
        self.notify(status(DaqSubState.Collecting, 2, ALERT))
        self.notify(status(DaqSubState.Completed, 4))
        self.assertEqual(self.successResultOf(self.exit_status), 0)
        output = self.out.getvalue()
        self.assertIn("\x1b[1;31mError  \x1b[0m", output)  # bold red
        self.assertIn("\x1b[1;31m ERROR\x1b[0m", output)
        self.assertIn("\x1b[32mCompleted\x1b[0m", output)  # green


class JsonWatchTests(WatchScenario):
    as_json = True

    def test_one_object_per_line(self) -> None:
        self.every_stage()
        self.assertEqual(self.successResultOf(self.exit_status), 0)
        events = [json.loads(line) for line in self.out.getvalue().splitlines()]
        self.assertEqual(
            [
                (event["event"], event.get("status", {}).get("substate"), event.get("progress"))
                for event in events
            ],
            [
                ("status", "Scheduled", None),
                ("status", "Collecting", None),
                ("progress", None, progress("collecting", 0, 4096)),
                ("progress", None, progress("collecting", 2048, 4096)),
                ("progress", None, progress("collecting", 2100, 4096)),
                ("status", "Collecting", None),
                ("status", "Collecting", None),
                ("status", "Merging", None),
                ("progress", None, progress("merging", 1, 3, "hdus")),
                ("status", "Releasing", None),
                ("status", "Completed", None),
            ],
        )
        self.assertEqual(events[-1]["status"]["result"], "/released/INSTR.1.fits")


class WatchAllTests(SynchronousTestCase):
    def test_every_daq_until_the_connection_ends(self) -> None:
        server = FakeServer()
        clock = Clock()
        clock.advance(T0)
        out = io.StringIO()
        view = WatchView(Console(out, io.StringIO(), False, False))
        watching = ensureDeferred(Watcher(server.client, clock, view).run())
        server.reply(None)
        query = server.reply(
            [status(DaqSubState.Merging, 0), {**status(DaqSubState.Scheduled, 0), "id": "A"}]
        )
        self.assertEqual(query["method"], "/daq/GetActiveDaqs")
        poll = server.reply(internal(DaqSubState.Merging, 0, progress("merging", 0, 2, "hdus")))
        self.assertEqual(poll["params"], {"id": "TEST.1"})  # asked at once, not a second later
        server.send(
            {"method": "/daq/status", "params": {**status(DaqSubState.Scheduled, 1), "id": "B"}}
        )
        server.send({"method": "/daq/status", "params": status(DaqSubState.Completed, 2)})
        clock.advance(1)
        self.assertEqual(server.requests(), [])  # nothing is being collected or merged now
        self.assertNoResult(watching)
        server.protocol.connectionLost(Failure(ConnectionError("bye")))
        self.assertIn("bye", str(self.failureResultOf(watching).value))
        self.assertEqual(
            out.getvalue().splitlines(),
            [
                "00:00:00  TEST.1  Merging",
                "00:00:00  A  Scheduled",
                "00:00:00  TEST.1  merging 0/2 hdus (0.0%)",
                "00:00:01  B  Scheduled",
                "00:00:02  TEST.1  Completed",
            ],
        )

    def test_it_says_that_it_watches_every_daq_and_where(self) -> None:
        server = FakeServer()
        out, err = io.StringIO(), io.StringIO()
        options = Namespace(command="watch", id=None)
        context = Context(server.client, options, Console(out, err, False, False), Clock(), None)
        watching = ensureDeferred(execute(context))
        self.assertEqual(err.getvalue(), "")  # not before the server took the subscription
        server.reply(None)
        self.assertEqual(err.getvalue(), f"watching all DAQs at {ENDPOINT}; Ctrl-C to stop\n")
        server.reply([])
        self.assertEqual(out.getvalue(), "")  # an idle watch: that line is all there is
        server.protocol.connectionLost(Failure(ConnectionError("bye")))
        self.assertEqual(self.successResultOf(watching), 3)
