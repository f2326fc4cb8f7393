"""Text for people: sizes, ages, tables, progress bars, status lines."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from dpmd.client.render import (
    active_table,
    age,
    event_line,
    human_size,
    internal_text,
    percent,
    progress_bar,
    progress_text,
    status_text,
    storage_text,
)
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


class TextTests(SynchronousTestCase):
    def test_storage(self) -> None:
        text = storage_text(StorageStatus("/data/dpm", 4 * 1024**3, 3 * 1024**3, 2 * 1024**3, T0))
        self.assertEqual(
            text.splitlines(),
            [
                "workspace  /data/dpm",
                "capacity   4.0 GiB",
                "used       1.0 GiB (25.0%)",
                "free       3.0 GiB (75.0%)",
                "available  2.0 GiB (50.0%) to dpmd",
            ],
        )

    def test_progress(self) -> None:
        in_bytes = {"stage": "collecting", "done": 1024**2, "total": 4 * 1024**2, "unit": "bytes"}
        self.assertEqual(progress_text(in_bytes), "collecting 1.0 MiB/4.0 MiB (25.0%)")
        hdus = {"stage": "merging", "done": 3, "total": 5, "unit": "hdus"}
        self.assertEqual(progress_text(hdus), "merging 3/5 hdus (60.0%)")
        self.assertEqual(progress_text({**hdus, "total": 0, "done": 0}), "merging 0/0 hdus")
        self.assertEqual(progress_text(None), "-")
        self.assertEqual(
            progress_bar(in_bytes, width=8), "[##------]  25.0%  collecting 1.0 MiB/4.0 MiB"
        )
        self.assertEqual(
            progress_bar({**hdus, "done": 9}, width=4), "[####] 180.0%  merging 9/5 hdus"
        )
        self.assertEqual(
            progress_bar({**hdus, "total": 0}, width=4), "[----]      -  merging 3/0 hdus"
        )

    def test_status(self) -> None:
        plain = status_text(
            status(DaqSubState.Merging, ALERT, WARNING, message="merging", result="")
        )
        self.assertEqual(
            plain.splitlines(),
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
        coloured = status_text(status(DaqSubState.Completed, WARNING), colour=True)
        self.assertIn("\x1b[32mCompleted\x1b[0m", coloured)
        self.assertIn("\x1b[33mWarning\x1b[0m PrimaryHduResized", coloured)
        self.assertNotIn("\x1b", status_text(status(DaqSubState.Completed, WARNING)))

    def test_event_line(self) -> None:
        self.assertEqual(
            event_line(status(DaqSubState.Collecting, message="collecting 2 files"), False),
            "00:00:05  TEST.1  Collecting  collecting 2 files",
        )
        self.assertEqual(
            event_line(status(DaqSubState.Aborted, ALERT), True),
            "00:00:05  TEST.1  \x1b[31mAborted\x1b[0m\x1b[1;31m ERROR\x1b[0m",
        )

    def test_active_table(self) -> None:
        rows = [
            (
                status(DaqSubState.Merging, ALERT, id="TEST.LONGER.ID"),
                {
                    "queued_at": T0 - 125,
                    "progress": {"stage": "merging", "done": 1, "total": 4, "unit": "hdus"},
                },
            ),
            (status(DaqSubState.Scheduled), {"queued_at": T0 - 5, "progress": None}),
        ]
        self.assertEqual(
            active_table(rows, T0).splitlines(),
            [
                "ID              SUBSTATE   ERROR  PROGRESS                  AGE",
                "TEST.LONGER.ID  Merging    yes    merging 1/4 hdus (25.0%)  2m05s",
                "TEST.1          Scheduled  -      -                         5s",
            ],
        )
        self.assertEqual(active_table([], T0), "no active DAQs")

    def test_internal(self) -> None:
        detail = {
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
            "released": {"how": "link"},
            "history": [
                {"event": "queue", "message": "queued", "substate": "Scheduled", "timestamp": T0},
                {"note": "no time"},
                "odd entry",
            ],
        }
        text = internal_text(status(DaqSubState.Collecting), detail)
        for expected in [
            "queued     2026-01-01T00:00:00Z",
            "finished   -",
            "workspace  /dpm/in-progress/TEST.1",
            "progress   collecting 0 B/2.0 KiB (0.0%)",
            "product    /dpm/TEST.1/INSTR.1.fits",
            'released   {"how": "link"}',
            "dcs   collected  2.0 KiB  /dpm/in-progress/TEST.1/sources/a.fits",
            "transfer  4242  rsync a b",
            "  2026-01-01T00:00:00.000Z  Scheduled  queued  event=queue",
            "  -  note=no time",
            "  odd entry",
        ]:
            self.assertIn(expected, text.splitlines())


class WireValueTests(SynchronousTestCase):
    def test_enumerations_print_as_their_wire_value(self) -> None:
        from dpmd.model import DaqState

        self.assertEqual(str(DaqSubState.Collecting), "Collecting")
        self.assertEqual(f"{DaqState.StateMerging}", "StateMerging")
        self.assertEqual(str(AlertSeverity.Warning), "Warning")
        self.assertEqual(repr(DaqSubState.Merging), "<DaqSubState.Merging: 'Merging'>")
