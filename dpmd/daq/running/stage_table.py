"""Every fact about the stages, in one table.

For each stage substate: the function that runs it, the event that ends it
and the message that goes with it, the record field its result goes to, the
Error alerts it raises when it fails (which ``RetryMergeDaq`` answers), and all
the alerts it owns (cleared when it runs again, as it raises them anew if
they still hold).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred

from dpmd.daq.lifecycle import Event
from dpmd.daq.running.watchdog import STAGE_STALLED
from dpmd.model import DaqAlert, DaqSubState
from dpmd.stages import StageHost
from dpmd.stages.collect import SUSPICIOUS, Collected, collect
from dpmd.stages.merge import MERGER_ALERTS, SOURCE_CHANGED, Merged, merge
from dpmd.stages.release import release

S = DaqSubState


@dataclass(frozen=True)
class StageSpec:
    """Every fact about one stage: what runs it, what ends it, where its result goes and
    which alerts it raises and owns."""

    substate: DaqSubState
    name: str
    run: Callable[[StageHost], Deferred[Any]]
    done: Event
    done_message: str
    result_field: str
    error_category: str
    """The Error alert of a failed run (a problem may name a category of its own)."""
    alerts: tuple[str, ...]
    errors: tuple[str, ...]
    """The Error alerts of a failed run, which ``RetryMergeDaq`` answers."""

    def result_fields(self, result: Any) -> dict[str, Any]:
        """What the stage's result changes in the record."""
        if isinstance(result, Merged):
            return {"product": result.path, "product_size": result.size}
        if isinstance(result, Collected):
            return {"sources": tuple(result.sources), "recollect": ()}
        return {self.result_field: result}

    def history_note(self, result: Any) -> dict[str, Any] | None:
        """What the history keeps of a run's result beside its message: the checksums of
        the sources collected again, before and after."""
        if isinstance(result, Collected) and result.recollected:
            return {"recollected": result.recollected}
        return None

    def failed(self, alerts: tuple[DaqAlert, ...]) -> bool:
        """A run of this stage failed and waits for a retry."""
        return any(alert.category in self.errors for alert in alerts)


STAGES: dict[DaqSubState, StageSpec] = {
    spec.substate: spec
    for spec in (
        StageSpec(S.Collecting, "collecting", collect, Event.COLLECTED,
                  "sources collected; merging", "sources", "SourceFileCollectionError",
                  ("SourceFileCollectionError", SUSPICIOUS, STAGE_STALLED),
                  ("SourceFileCollectionError",)),
        StageSpec(S.Merging, "merging", merge, Event.MERGED, "product merged; releasing",
                  "product", "MergeError",
                  ("MergeError", SOURCE_CHANGED, *sorted(MERGER_ALERTS), STAGE_STALLED),
                  ("MergeError", SOURCE_CHANGED)),
        StageSpec(S.Releasing, "releasing", release, Event.RELEASED, "product released",
                  "result", "SourceFileReleasingError",
                  ("SourceFileReleasingError", STAGE_STALLED), ("SourceFileReleasingError",)),
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
