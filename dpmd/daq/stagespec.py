"""Every fact about the stages, in one table.

For each stage substate: the function that runs it, the event that ends it
and the message that goes with it, the record field its result goes to, the
Error alert it raises when it fails (which ``RetryMergeDaq`` clears), and all
the alerts it owns (cleared when it runs again, as it raises them anew if
they still hold).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred

from dpmd.daq.lifecycle import Event
from dpmd.daq.watchdog import STAGE_STALLED
from dpmd.model import DaqSubState
from dpmd.stages import StageHost
from dpmd.stages.collect import SUSPICIOUS, collect
from dpmd.stages.merge import MERGER_ALERTS, Merged, merge
from dpmd.stages.release import release

S = DaqSubState


@dataclass(frozen=True)
class StageSpec:
    substate: DaqSubState
    name: str
    run: Callable[[StageHost], Deferred[Any]]
    done: Event
    done_message: str
    result_field: str
    error_category: str
    alerts: tuple[str, ...]

    def result_fields(self, result: Any) -> dict[str, Any]:
        """What the stage's result changes in the record."""
        if isinstance(result, Merged):
            return {"product": result.path, "product_size": result.size}
        return {self.result_field: tuple(result) if isinstance(result, list) else result}


STAGES: dict[DaqSubState, StageSpec] = {
    spec.substate: spec
    for spec in (
        StageSpec(S.Collecting, "collecting", collect, Event.COLLECTED,
                  "sources collected; merging", "sources", "SourceFileCollectionError",
                  ("SourceFileCollectionError", SUSPICIOUS, STAGE_STALLED)),
        StageSpec(S.Merging, "merging", merge, Event.MERGED, "product merged; releasing",
                  "product", "MergeError", ("MergeError", *sorted(MERGER_ALERTS), STAGE_STALLED)),
        StageSpec(S.Releasing, "releasing", release, Event.RELEASED, "product released",
                  "result", "SourceFileReleasingError",
                  ("SourceFileReleasingError", STAGE_STALLED)),
    )
}  # fmt: skip

FIRST_STAGE = STAGES[S.Collecting]
NEXT_STAGE = {S.Collecting: STAGES[S.Merging], S.Merging: STAGES[S.Releasing]}


def begin(stages: dict[str, dict[str, Any]], name: str, now: float) -> dict[str, dict[str, Any]]:
    """The stage bookkeeping of the record with one more run of ``name`` starting now."""
    before = stages.get(name, {})
    entry = {"attempts": int(before.get("attempts", 0)) + 1, "started_at": now,
             "ended_at": None, "last_error": before.get("last_error"),
             "peak_rss_bytes": None}  # fmt: skip
    return {**stages, name: entry}


def end(stages: dict[str, dict[str, Any]], name: str, now: float, error: str | None = None,
        peak_rss: int | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The bookkeeping with the run of ``name`` ended now: its error, its children's peak memory."""
    entry = {**stages.get(name, {"attempts": 1, "started_at": None}), "ended_at": now}
    if error is not None:
        entry["last_error"] = error
    if peak_rss is not None:
        entry["peak_rss_bytes"] = peak_rss
    return {**stages, name: entry}
