"""Each stage's child peak memory in the stage bookkeeping and the timeline (fake reactor)."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dpmd.daq.running.stage_table import begin, end
from dpmd.record import DaqRecord
from tests.daqharness import Harness, specification


class StageMemoryTests(SynchronousTestCase):
    def timeline_stages(self, h: Harness, daq_id: str) -> dict[str, Any]:
        [daq] = [entry for entry in h.answer(h.manager.get_timeline(None, None, 10))["daqs"]
                 if entry["id"] == daq_id]  # fmt: skip
        return dict(daq["stages"])

    def test_the_mergers_own_peak_is_kept_with_the_merging_stage(self) -> None:
        h = Harness(self)
        h.queue(specification("MEM.1", h.source("a.fits")))
        h.finish_merge(peak_rss_bytes=123 << 20)
        self.assertEqual(h.status("MEM.1").substate.value, "Completed")
        stages = self.timeline_stages(h, "MEM.1")
        self.assertEqual(stages["merging"]["peak_rss_bytes"], 123 << 20)
        self.assertIsNone(stages["collecting"]["peak_rss_bytes"], "a local source needs no child")
        recorded = h.internal("MEM.1")["detail"]["stages"]
        self.assertEqual(recorded["merging"]["peak_rss_bytes"], 123 << 20, "kept in the store")

    def test_a_run_again_starts_with_its_peak_unknown(self) -> None:
        h = Harness(self)
        h.queue(specification("MEM.2", h.source("a.fits")))
        h.fail_merge(5, b"disk full")
        failed = h.internal("MEM.2")["detail"]["stages"]["merging"]
        self.assertIsNone(failed["peak_rss_bytes"], "the fake merger's pid has no /proc entry")
        h.test.successResultOf(h.manager.retry_merge_daq("MEM.2"))
        h.settle()
        h.finish_merge(peak_rss_bytes=7 << 20)
        self.assertEqual(self.timeline_stages(h, "MEM.2")["merging"]["peak_rss_bytes"], 7 << 20)

    def test_bookkeeping(self) -> None:
        started = begin({"merging": {"attempts": 1, "peak_rss_bytes": 9}}, "merging", 10.0)
        self.assertIsNone(started["merging"]["peak_rss_bytes"], "a new run, a new peak")
        self.assertEqual(end(started, "merging", 11.0, peak_rss=5)["merging"]["peak_rss_bytes"], 5)
        self.assertIsNone(end(started, "merging", 11.0)["merging"]["peak_rss_bytes"])

    def test_a_record_from_before_has_no_peak(self) -> None:
        """Records stored by an earlier dpmd load; their stages have no peak: unknown."""
        old = {"format": 2, "id": "OLD.1", "file_id": "OLD.1", "seq": 1, "substate": "Completed",
               "queued_at": 1.0, "timestamp": 2.0, "alerts": [], "message": "", "result": "",
               "started_at": 1.0, "finished_at": 2.0, "history": [],
               "sources": [{"name": "a", "location": "a.fits", "local_path": "/a.fits",
                            "state": "collected", "bytes": 2880, "mtime": 0.5}],
               "product": "", "deliveries": {},
               "stages": {"merging": {"attempts": 1, "started_at": 1.0, "ended_at": 2.0,
                                      "last_error": None}}}  # fmt: skip
        record = DaqRecord.from_json(old)
        self.assertNotIn("peak_rss_bytes", record.stages["merging"])
        self.assertEqual(DaqRecord.decode(record.encode()), record)
