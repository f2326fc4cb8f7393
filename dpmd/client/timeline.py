"""``dpmctl timeline``: where the night's time went, per DAQ and per stage.

Dates on the command line are what people type: ISO 8601 (``2026-01-01T22:00``,
``2026-01-01T22:00:00Z``, ``2026-01-01T22:00+01:00``) or a day
(``2026-01-01``, its midnight), in local time unless they name a zone; the
server is asked in Unix seconds.  Output times are UTC, as everywhere in
``dpmctl``.

The per-stage summary is over the last run of each stage of each DAQ (the
run the server keeps): count, median, 95th percentile (nearest rank: the
smallest duration that at least 95 % of the runs do not exceed) and maximum
duration, and the throughput as the stage's bytes summed over its seconds
summed, so that one quick small DAQ does not outweigh a long large one;
and the largest peak memory of the stage's child processes (a stage whose
children were never seen, or a DAQ of an older server, has none).
"""

from __future__ import annotations

import argparse
import datetime
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.text import Text

from dpmd.client.models import StageRun, Timeline, TimelineDaq
from dpmd.client.render import Narrow, column_table
from dpmd.client.units import clock_time, duration, human_size, utc_time

DATE_FORMS = (
    "ISO 8601 (2026-01-01T22:00, 2026-01-01T22:00:00Z, 2026-01-01T22:00+01:00) or YYYY-MM-DD"
)


def parse_date(text: str) -> float:
    """Unix seconds of a date as typed: local time unless it says ``Z`` or an offset."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date: give {DATE_FORMS}") from None
    return moment.timestamp()  # a naive time is taken as local time


def date_argument(text: str) -> float:
    """``parse_date`` as an argparse ``type``: a bad date is a usage error naming it."""
    try:
        return parse_date(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


@dataclass(frozen=True)
class StageSummary:
    """How long one stage took over the DAQs of a timeline (seconds)."""

    count: int
    median: float
    p95: float
    max: float
    bytes_per_second: float | None
    max_peak_rss_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "median": self.median, "p95": self.p95, "max": self.max,
                "bytes_per_second": self.bytes_per_second,
                "max_peak_rss_bytes": self.max_peak_rss_bytes}  # fmt: skip


def nearest_rank(ordered: Sequence[float], fraction: float) -> float:
    """The smallest value that at least ``fraction`` of ``ordered`` (sorted) do not exceed."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def stage_names(daqs: Iterable[TimelineDaq]) -> list[str]:
    """Every stage that occurs, in the order the server lists them (first seen first)."""
    names: dict[str, None] = {}
    for daq in daqs:
        names.update(dict.fromkeys(daq.stages))
    return list(names)


def summarize(daqs: Sequence[TimelineDaq]) -> dict[str, StageSummary]:
    """Per stage, over the runs that ended: durations and throughput."""
    summaries = {}
    for name in stage_names(daqs):
        runs = [daq.stages[name] for daq in daqs if name in daq.stages]
        ended = [(run.seconds, run.bytes) for run in runs if run.seconds is not None]
        if not ended:
            continue
        seconds = sorted(taken for taken, _ in ended)
        counted = [(taken, size) for taken, size in ended if size is not None]
        busy = sum(taken for taken, _ in counted)
        moved = sum(size for _, size in counted if size is not None)
        peaks = [run.peak_rss_bytes for run in runs if run.peak_rss_bytes is not None]
        summaries[name] = StageSummary(
            count=len(seconds),
            median=statistics.median(seconds),
            p95=nearest_rank(seconds, 0.95),
            max=seconds[-1],
            bytes_per_second=moved / busy if counted and busy > 0 else None,
            max_peak_rss_bytes=max(peaks, default=None),
        )
    return summaries


def timeline_json(timeline: Timeline) -> dict[str, Any]:
    """``--json``: the server's answer with the summary added."""
    summary = {name: entry.to_json() for name, entry in summarize(timeline.daqs).items()}
    return {**timeline.to_json(), "summary": summary}


def stage_cell(run: StageRun | None) -> str:
    """``0.41s``, ``0.41s 48.2 MiB`` (its children's peak memory, when known),
    ``12.3s (2 runs)`` (when it ran more than once), ``running``, or ``-``."""
    if run is None or run.started_at is None:
        return "-"
    taken = run.seconds
    text = "running" if taken is None else duration(taken)
    if run.peak_rss_bytes is not None:
        text += f" {human_size(run.peak_rss_bytes)}"
    return f"{text} ({run.attempts} runs)" if run.attempts > 1 else text


def finished_text(daq: TimelineDaq) -> str:
    if daq.finished_at is None:
        return "running"
    if daq.queued_at is not None and utc_time(daq.queued_at)[:10] == utc_time(daq.finished_at)[:10]:
        return f"{clock_time(daq.finished_at)}Z"  # the same day: the time says enough
    return utc_time(daq.finished_at)


def _window(since: float | None, until: float | None) -> str:
    words = [] if since is None else [f" since {utc_time(since)}"]
    return "".join(words + ([] if until is None else [f" until {utc_time(until)}"]))


def _stacked(row: Sequence[str], names: Sequence[str]) -> Group:
    """A DAQ for a narrow terminal: its id, then its substate and times, then its stages."""
    times = f"{row[1]}  {row[2]} → {row[3]}"
    stages = "  ".join(f"{name} {cell}" for name, cell in zip(names, row[4:], strict=True))
    return Group(Text(row[0], overflow="fold"),
                 Padding(Text(times, overflow="fold"), (0, 0, 0, 2)),
                 Padding(Text(stages, overflow="fold"), (0, 0, 0, 2)))  # fmt: skip


def timeline_view(
    timeline: Timeline, since: float | None, until: float | None, limit: int
) -> RenderableType:
    """One line per DAQ (id, substate, queued → finished, time per stage), then the summary."""
    count = len(timeline.daqs)
    heading = f"{count} DAQ{'' if count == 1 else 's'}{_window(since, until)} (times in UTC)"
    parts: list[RenderableType] = [Text(heading)]
    if not timeline.daqs:
        return Group(*parts)
    names = stage_names(timeline.daqs)
    rows = [
        [daq.id, daq.substate, utc_time(daq.queued_at), finished_text(daq),
         *(stage_cell(daq.stages.get(name)) for name in names)]
        for daq in timeline.daqs
    ]  # fmt: skip
    header = ("ID", "SUBSTATE", "QUEUED", "FINISHED", *(name.upper() for name in names))
    wide = column_table(header, rows)
    parts.append(Narrow(wide, Group(*(_stacked(row, names) for row in rows))))
    if timeline.truncated:
        parts.append(
            Text(f"(only the first {limit} DAQs: give a shorter period or a larger --limit)")
        )
    summaries = summarize(timeline.daqs)
    if summaries:
        cells = [
            (name, str(entry.count), duration(entry.median), duration(entry.p95),
             duration(entry.max),
             "-" if entry.bytes_per_second is None
             else f"{human_size(int(entry.bytes_per_second))}/s",
             "-" if entry.max_peak_rss_bytes is None else human_size(entry.max_peak_rss_bytes))
            for name, entry in summaries.items()
        ]  # fmt: skip
        header = ("STAGE", "COUNT", "MEDIAN", "P95", "MAX", "RATE", "PEAK")
        parts += ["per stage:", column_table(header, cells)]
    return Group(*parts)
