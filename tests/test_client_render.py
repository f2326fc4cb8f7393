"""Text for people: sizes, ages, tables, progress bars, status lines."""

from __future__ import annotations

import io
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dpmd.client.console import Console, wants_colour
from dpmd.client.internal import internal_view
from dpmd.client.progress import progress_rows, progress_text
from dpmd.client.render import active_view, event_line, status_view, storage_view
from dpmd.client.units import age, human_size, percent
from dpmd.model import AlertSeverity, DaqAlert, DaqStatus, DaqSubState, StorageStatus

T0 = 1767225600.0  # 2026-01-01T00:00:00Z

ALERT = DaqAlert(
    "SourceFileCollectionError", "fcs", AlertSeverity.Error, "fcs-host unreachable", T0
)
WARNING = DaqAlert("PrimaryHduResized", "", AlertSeverity.Warning, "header grew", T0)


def status(substate: DaqSubState, *alerts: DaqAlert, **fields: object) -> DaqStatus:
    values: dict[str, object] = {
        "id": "TEST.1",
        "file_id": "INSTR.1",
        "substate": substate,
        "alerts": alerts,
        "timestamp": T0 + 5,
    }
    values.update(fields)
    return DaqStatus(**values)  # type: ignore[arg-type]


class UnitTests(SynchronousTestCase):
    def test_sizes(self) -> None:
        for size, text in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (5 * 1024**2, "5.0 MiB"),
            (270553174016, "252.0 GiB"),
            (3 * 1024**5, "3.0 PiB"),
            (2 * 1024**7, "2048.0 EiB"),
        ]:
            self.assertEqual(human_size(size), text)

    def test_percent(self) -> None:
        self.assertEqual(percent(1, 3), "33.3%")
        self.assertEqual(percent(5, 5), "100.0%")
        self.assertEqual(percent(1, 0), "-")

    def test_ages(self) -> None:
        for seconds, text in [
            (-3, "0s"),
            (0, "0s"),
            (59.9, "59s"),
            (187, "3m07s"),
            (7500, "2h05m"),
            (3 * 86400 + 4 * 3600 + 59, "3d04h"),
        ]:
            self.assertEqual(age(seconds), text)


def shown(renderable: Any, width: int | None = None, colour: bool = False) -> str:
    """What ``dpmctl`` writes for ``renderable``: to a pipe, or a terminal ``width`` wide."""
    out = io.StringIO()
    Console(out, io.StringIO(), False, width is not None, colour, width).print(renderable)
    return out.getvalue()


INTERNAL_DETAIL = {
    "queued_at": T0,
    "started_at": T0 + 1,
    "finished_at": None,
    "workspace": "/dpm/in-progress/TEST.1",
    "progress": {"stage": "collecting", "done": 0, "total": 2048, "unit": "bytes"},
    "sources": [
        {
            "name": "dcs",
            "location": "dcs-host:/data/a.fits",
            "local_path": "/dpm/in-progress/TEST.1/sources/a.fits",
            "state": "collected",
            "bytes": 2048,
        }
    ],
    "processes": [{"kind": "transfer", "pid": 4242, "argv": ["rsync", "a", "b"]}],
    "archived": False,
    "product": "/dpm/TEST.1/INSTR.1.fits",
    "released": {"0": {"path": "/data/olas/INSTR.1.fits", "how": "link"}},
    "checks": {"free": 12},
    "history": [
        {"event": "queue", "message": "queued", "substate": "Scheduled", "timestamp": T0},
        {"note": "no time"},
        "odd entry",
    ],
}


def active_rows() -> list[tuple[DaqStatus, dict[str, Any]]]:
    return [
        (
            status(DaqSubState.Merging, ALERT, id="DEMO.2026-01-01T12:00:00.000"),
            {
                "queued_at": T0 - 125,
                "progress": {"stage": "merging", "done": 1, "total": 4, "unit": "hdus"},
            },
        ),
        (status(DaqSubState.Scheduled), {"queued_at": T0 - 5, "progress": None}),
    ]


class TextTests(SynchronousTestCase):
    def test_storage(self) -> None:
        view = storage_view(StorageStatus("/data/dpm", 4 * 1024**3, 3 * 1024**3, 2 * 1024**3, T0))
        self.assertEqual(
            shown(view).splitlines(),
            [
                "workspace  /data/dpm",
                "capacity   4.0 GiB",
                "used       1.0 GiB (25.0%)",
                "free       3.0 GiB (75.0%)",
                "available  2.0 GiB (50.0%) to dpmd",
            ],
        )

    def test_progress_text(self) -> None:
        in_bytes = {"stage": "collecting", "done": 1024**2, "total": 4 * 1024**2, "unit": "bytes"}
        self.assertEqual(progress_text(in_bytes), "collecting 1.0 MiB/4.0 MiB (25.0%)")
        hdus = {"stage": "merging", "done": 3, "total": 5, "unit": "hdus"}
        self.assertEqual(progress_text(hdus), "merging 3/5 hdus (60.0%)")
        # A progress of no size is a step that says what it does: no "0/0", no "0 B/0 B".
        self.assertEqual(progress_text({**hdus, "total": 0, "done": 0}), "merging")
        waiting = "waiting for a merge slot (2 of limits.merge = 2 in use)"
        self.assertEqual(progress_text({**in_bytes, "stage": waiting, "total": 0}), waiting)
        self.assertEqual(progress_text(None), "-")

    def test_status(self) -> None:
        view = status_view(status(DaqSubState.Merging, ALERT, WARNING, message="merging"))
        self.assertEqual(
            shown(view).splitlines(),
            [
                "id       TEST.1",
                "file id  INSTR.1",
                "state    StateMerging / Merging",
                "error    yes",
                "message  merging",
                "result   -",
                "changed  2026-01-01T00:00:05Z",
                "alerts:",
                "  Error   SourceFileCollectionError[fcs]: fcs-host unreachable",
                "  Warning PrimaryHduResized: header grew",
            ],
        )
        coloured = shown(status_view(status(DaqSubState.Completed, WARNING)), 80, colour=True)
        self.assertIn("\x1b[32mCompleted\x1b[0m", coloured)
        self.assertIn("\x1b[33mWarning\x1b[0m PrimaryHduResized", coloured)
        self.assertNotIn("\x1b", shown(status_view(status(DaqSubState.Completed, WARNING)), 80))

    def test_event_line(self) -> None:
        line = event_line(status(DaqSubState.Collecting, message="collecting 2 files"))
        self.assertEqual(shown(line), "00:00:05  TEST.1  Collecting  collecting 2 files\n")
        self.assertEqual(
            shown(event_line(status(DaqSubState.Aborted, ALERT)), 80, colour=True),
            "00:00:05  TEST.1  \x1b[31mAborted\x1b[0m\x1b[1;31m ERROR\x1b[0m\n",
        )

    def test_active_table(self) -> None:
        self.assertEqual(
            shown(active_view(active_rows(), T0)).splitlines(),
            [
                "ID                            SUBSTATE   ERROR  PROGRESS                  AGE",
                "DEMO.2026-01-01T12:00:00.000  Merging    yes    merging 1/4 hdus (25.0%)  2m05s",
                "TEST.1                        Scheduled  -      -                         5s",
            ],
        )
        self.assertEqual(shown(active_view([], T0)), "no active DAQs\n")

    def test_active_table_on_a_narrow_terminal_puts_each_daq_on_two_lines(self) -> None:
        self.assertEqual(
            shown(active_view(active_rows(), T0), 40).splitlines(),
            [
                "DEMO.2026-01-01T12:00:00.000",
                "  Merging  yes  merging 1/4 hdus (25.0%)",
                "  2m05s",
                "TEST.1",
                "  Scheduled  -  -  5s",
            ],
        )
        wide = shown(active_view(active_rows(), T0), 200).splitlines()
        self.assertEqual(wide[0].split(), ["ID", "SUBSTATE", "ERROR", "PROGRESS", "AGE"])

    def test_internal(self) -> None:
        text = shown(internal_view(status(DaqSubState.Collecting), INTERNAL_DETAIL))
        for expected in [
            "queued       2026-01-01T00:00:00Z",
            "finished     -",
            "workspace    /dpm/in-progress/TEST.1",
            "progress     collecting 0 B/2.0 KiB (0.0%)",
            "product      /dpm/TEST.1/INSTR.1.fits",
            "released[0]  /data/olas/INSTR.1.fits (link)",
            'checks       {"free": 12}',
            "dcs   collected  2.0 KiB  /dpm/in-progress/TEST.1/sources/a.fits",
            "transfer  4242  rsync a b",
            "  2026-01-01T00:00:00.000Z  Scheduled  queued  event=queue",
            "  -  note=no time",
            "  odd entry",
        ]:
            self.assertIn(expected, text.splitlines())

    def test_internal_product_digest_stages_and_deliveries(self) -> None:
        detail = {
            "archived": True,
            "workspace": "/dpm/archive/TEST.1",
            "workspace_removed": True,
            "product_digest": {"size": 146880, "blake2b": "0d16" + "e" * 124},
            "stages": {
                "collecting": {"attempts": 1, "started_at": T0, "ended_at": T0 + 86400,
                               "last_error": None},
                "merging": {"attempts": 2, "started_at": T0 + 86400, "ended_at": None,
                            "last_error": "merger exited with 5 (no space left on device)"},
            },
            "deliveries": {"0": {"path": "/data/olas/INSTR.1.fits", "how": "copy",
                                 "state": "staged"}},
        }  # fmt: skip
        lines = shown(internal_view(status(DaqSubState.Merging), detail), 200).splitlines()
        for expected in [
            "workspace        /dpm/archive/TEST.1 (removed by retention)",
            "product size     146880 bytes",
            f"product blake2b  0d16{'e' * 124}",
        ]:
            self.assertIn(expected, lines)
        start = lines.index("stages:")
        self.assertEqual(
            [line.split(None, 5) for line in lines[start + 1 : start + 4]],
            [["STAGE", "RUNS", "STARTED", "ENDED", "TOOK", "LAST ERROR"],
             # ended on another day than it started: the whole date
             ["collecting", "1", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "1d00h", "-"],
             ["merging", "2", "2026-01-02T00:00:00Z", "-", "running",
              "merger exited with 5 (no space left on device)"]],
        )  # fmt: skip
        start = lines.index("deliveries:")
        self.assertEqual(
            [line.split() for line in lines[start + 1 : start + 3]],
            [
                ["RECEIVER", "STATE", "HOW", "PATH"],
                ["0", "staged", "copy", "/data/olas/INSTR.1.fits"],
            ],
        )
        self.assertFalse([line for line in lines if '"stages"' in line or 'blake2b":' in line])

    def test_archived_product_without_receivers_is_said_to_be_gone(self) -> None:
        detail = {"archived": True, "product": "/dpm/TEST.1/INSTR.1.fits", "released": {}}
        self.assertIn(
            "product    /dpm/TEST.1/INSTR.1.fits (removed when the DAQ was archived)",
            shown(internal_view(status(DaqSubState.Aborted), detail)).splitlines(),
        )

    def test_nothing_is_wider_than_the_terminal(self) -> None:
        views = [
            status_view(status(DaqSubState.Merging, ALERT, message="m" * 150)),
            internal_view(status(DaqSubState.Collecting), INTERNAL_DETAIL),
            active_view(active_rows(), T0),
            storage_view(StorageStatus("/" + "d" * 120, 1, 1, 1, T0)),
        ]
        for width in (40, 80, 200):
            for view in views:
                for line in shown(view, width).splitlines():
                    self.assertLessEqual(len(line), width, (width, line))


class ProgressRowTests(SynchronousTestCase):
    STEP = {"stage": "collecting", "done": 1024**2, "total": 4 * 1024**2, "unit": "bytes"}
    ID = "DEMO.2026-01-01T12:00:00.000"

    def rows(self, width: int, step: dict[str, Any] | None = None) -> list[str]:
        return [
            line
            for row in progress_rows(self.ID, step or self.STEP, width)
            for line in shown(row, width).splitlines()
        ]

    def test_one_row_when_it_fits_and_the_bar_is_at_most_forty_cells(self) -> None:
        [row] = self.rows(200)
        self.assertTrue(row.startswith(f"{self.ID}  ━━━━━━━━━━"))
        self.assertTrue(row.endswith("  25.0%  collecting 1.0 MiB/4.0 MiB"))
        self.assertEqual(len(row), len(self.ID) + 2 + 40 + 9 + len("collecting 1.0 MiB/4.0 MiB"))
        [row] = self.rows(80)
        self.assertEqual(len(row), 79)  # the last column stays free

    def test_two_rows_on_a_narrow_terminal_and_then_no_bar(self) -> None:
        first, second = self.rows(60)
        self.assertEqual(first, self.ID)
        self.assertTrue(second.startswith("  ━"))
        self.assertEqual(len(second), 59)
        self.assertEqual(self.rows(40), [self.ID, "  25.0%  collecting 1.0 MiB/4.0 MiB"])
        first, second = self.rows(20)
        self.assertEqual((first, second), ("DEMO.2026-01-01T12…", "  25.0%  collectin…"))

    def test_a_progress_of_no_size_is_its_text_without_bar_or_share(self) -> None:
        waiting = {**self.STEP, "stage": "waiting for a merge slot (1 of limits.merge = 1 in use)",
                   "done": 0, "total": 0}  # fmt: skip
        [row] = self.rows(200, waiting)
        self.assertEqual(row, f"{self.ID}  {waiting['stage']}")
        self.assertEqual(self.rows(60, waiting), [self.ID, f"  {waiting['stage']}"])
        self.assertEqual(self.rows(40, waiting), [self.ID, f"  {waiting['stage'][:36]}…"])

    def test_every_row_is_shorter_than_the_width(self) -> None:
        for width in range(12, 220, 7):
            for step in (self.STEP, {**self.STEP, "total": 0}, {**self.STEP, "done": 10 * 1024**2}):
                for line in self.rows(width, step):
                    self.assertLess(len(line), width, (width, line))


class WireValueTests(SynchronousTestCase):
    def test_enumerations_print_as_their_wire_value(self) -> None:
        from dpmd.model import DaqState

        self.assertEqual(str(DaqSubState.Collecting), "Collecting")
        self.assertEqual(f"{DaqState.StateMerging}", "StateMerging")
        self.assertEqual(str(AlertSeverity.Warning), "Warning")
        self.assertEqual(repr(DaqSubState.Merging), "<DaqSubState.Merging: 'Merging'>")


class ColourPolicyTests(SynchronousTestCase):
    def test_auto_colours_a_terminal_unless_no_color_or_a_dumb_one(self) -> None:
        self.assertTrue(wants_colour("auto", True, {}))
        self.assertFalse(wants_colour("auto", False, {}))
        self.assertFalse(wants_colour("auto", True, {"NO_COLOR": "1"}))
        self.assertTrue(wants_colour("auto", True, {"NO_COLOR": ""}))  # set but empty: ignored
        self.assertFalse(wants_colour("auto", True, {"TERM": "dumb"}))

    def test_the_option_wins_over_the_environment(self) -> None:
        self.assertTrue(wants_colour("always", False, {"NO_COLOR": "1"}))
        self.assertFalse(wants_colour("never", True, {}))
        self.assertRaises(ValueError, wants_colour, "sometimes", True, {})

    def test_never_on_a_terminal_still_redraws_but_writes_no_colour(self) -> None:
        out = io.StringIO()
        console = Console(out, io.StringIO(), False, True, colour=False, width=80)
        console.print(event_line(status(DaqSubState.Aborted, ALERT)))
        self.assertEqual(out.getvalue(), "00:00:05  TEST.1  Aborted ERROR\n")
        self.assertTrue(console.rich.is_terminal)
