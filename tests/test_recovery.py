"""Start-up from the store, the one-time import of a file-per-DAQ workspace, retention."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dpmd.daq.archive import release_anchor
from dpmd.daq.persist.store import Store
from dpmd.model import DaqSubState
from dpmd.record import DaqRecord
from tests.daqharness import Harness, make_fits, specification


def old_record(daq_id: str, seq: int, substate: str, **extra: Any) -> dict[str, Any]:
    """A ``status.json`` as the file-per-DAQ workspace wrote it (format 1)."""
    record = {
        "format": 1, "id": daq_id, "file_id": daq_id, "seq": seq, "substate": substate,
        "queued_at": 100.0 + seq, "timestamp": 100.0 + seq, "alerts": [], "message": "",
        "result": "", "started_at": None, "finished_at": None,
        "history": [{"substate": "Scheduled", "timestamp": 100.0 + seq, "event": "queue",
                     "message": "queued"}],
        "sources": [], "product": "", "released": {},
    }  # fmt: skip
    record.update(extra)
    return record


class LegacyImportTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.workspace = self.root / "dpm"
        self.source = str(make_fits(self.root / "data" / "a.fits"))

    def old_daq(self, parent: str, daq_id: str, seq: int, substate: str, **extra: Any) -> Path:
        folder = self.workspace / parent / daq_id
        (folder / "logs").mkdir(parents=True)
        spec = specification(daq_id, self.source)
        (folder / "specification.json").write_text(json.dumps(spec))
        (folder / "status.json").write_text(json.dumps(old_record(daq_id, seq, substate, **extra)))
        return folder

    def make_old_workspace(self) -> None:
        self.old_daq("archive", "L.0", 1, "Completed", finished_at=150.0,
                     released={"0": {"path": "/olas/L.0.fits", "how": "link"}})  # fmt: skip
        self.old_daq("daqs", "L.1", 3, "Scheduled")
        self.old_daq("daqs", "L.2", 2, "Collecting")
        broken = self.old_daq("daqs", "L.3", 4, "Scheduled")
        (broken / "status.json").write_text("{not json")
        (self.workspace / "incoming" / "L.9").mkdir(parents=True)

    def test_the_old_workspace_is_imported_at_the_first_start(self) -> None:
        self.make_old_workspace()
        h = Harness(self, root=self.root)
        self.assertEqual([s["id"] for s in h.active()], ["L.2", "L.1"])
        archived = h.status("L.0")
        self.assertEqual(archived.substate, DaqSubState.Completed)
        self.assertEqual(h.internal("L.0")["detail"]["released"]["0"]["path"], "/olas/L.0.fits")
        self.assertEqual(sorted(p.name for p in (self.workspace / "corrupt").iterdir()), ["L.3.0"])
        self.assertFalse((self.workspace / "incoming").exists())
        for parent in ("daqs", "archive"):
            self.assertEqual(list((self.workspace / parent).glob("*/status.json")), [])
        h.queue(specification("L.4", self.source))
        self.assertGreater(h.stored("L.4")["seq"], 3)
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_an_interrupted_import_leaves_nothing_and_is_done_again(self) -> None:
        self.make_old_workspace()
        real = Store.import_daqs

        def crash_half_way(store: Store, daqs: Any) -> int:
            def some() -> Any:
                iterator = iter(daqs)
                yield next(iterator)
                raise OSError("killed")

            return real(store, some())

        self.patch(Store, "import_daqs", crash_half_way)
        self.assertRaises(OSError, Harness, self, root=self.root)
        with Store(self.workspace / "dpmd.sqlite3") as store:
            self.assertEqual(store.unfinished(), [])
        self.assertTrue((self.workspace / "daqs" / "L.1" / "status.json").exists())
        self.patch(Store, "import_daqs", real)
        os.unlink(self.workspace / "dpmd.sqlite3")  # a crash before the first commit
        h = Harness(self, root=self.root)
        self.assertEqual([s["id"] for s in h.active()], ["L.2", "L.1"])


class RetentionTests(SynchronousTestCase):
    def test_old_folders_go_and_their_records_stay(self) -> None:
        h = Harness(self, **{"archive.keep_days": 2})
        h.queue(specification("K.1", h.source("a.fits")))
        h.finish_merge()
        folder = h.workspace.archived_dir("K.1")
        self.assertTrue(folder.exists())
        h.reactor.advance(1 * 86400)
        h.test.successResultOf(h.manager.archive.retention_pass())
        self.assertTrue(folder.exists(), "not yet two days old")
        h.reactor.advance(1.5 * 86400)
        h.test.successResultOf(h.manager.archive.retention_pass())
        self.assertFalse(folder.exists())
        internal = h.internal("K.1")
        self.assertTrue(internal["detail"]["workspace_removed"])
        self.assertEqual(internal["status"]["substate"], "Completed")

    def test_a_linked_copy_stays_while_a_receiver_link_points_at_it(self) -> None:
        root = Path(self.mktemp()).absolute()
        anchor = root / "linked" / "K.2"
        anchor.mkdir(parents=True)
        (anchor / "K.2.fits").write_bytes(b"product")
        receiver = root / "olas" / "K.2.fits"
        receiver.parent.mkdir()
        receiver.symlink_to(anchor / "K.2.fits")
        record = DaqRecord.from_json({
            **old_record("K.2", 1, "Completed"), "format": 2, "product_digest": None,
            "deliveries": {"0": {"path": str(receiver), "how": "symlink", "state": "delivered"}},
        })  # fmt: skip
        release_anchor(anchor, record)
        self.assertTrue(anchor.exists())
        receiver.unlink()  # the archive ingested it
        release_anchor(anchor, record)
        self.assertFalse(anchor.exists())
