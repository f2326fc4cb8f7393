"""Text for people: sizes, ages, tables, progress bars and status lines.

Everything here is a pure function of its arguments (the current time is
passed in), so ``dpmctl``'s output can be tested line by line.  Colour is
ANSI escapes and only used when the caller says the output is a terminal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from dpmd.model import AlertSeverity, DaqAlert, DaqStatus, DaqSubState, StorageStatus

RESET = "\x1b[0m"
SEVERITY_COLOURS = {
    AlertSeverity.Error: "\x1b[1;31m",  # bold red
    AlertSeverity.Warning: "\x1b[33m",  # yellow
    AlertSeverity.Info: "\x1b[36m",  # cyan
}
SUBSTATE_COLOURS = {
    DaqSubState.Completed: "\x1b[32m",  # green
    DaqSubState.Aborted: "\x1b[31m",  # red
    DaqSubState.Aborting: "\x1b[31m",
}

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_size(size: int) -> str:
    """``1536`` → ``1.5 KiB``: binary units, since disks are sized in them."""
    value = float(size)
    for unit in _SIZE_UNITS:
        if abs(value) < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def age(seconds: float) -> str:
    """A short duration: ``42s``, ``3m07s``, ``2h05m``, ``3d04h``."""
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def clock_time(timestamp: float) -> str:
    """``HH:MM:SS`` in UTC, the observatory's time."""
    return time.strftime("%H:%M:%S", time.gmtime(timestamp))


def utc_time(timestamp: float | None, milliseconds: bool = False) -> str:
    if timestamp is None:
        return "-"
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    return f"{text}.{int(timestamp % 1 * 1000):03d}Z" if milliseconds else f"{text}Z"


def paint(text: str, colour: str | None, enabled: bool) -> str:
    return f"{colour}{text}{RESET}" if enabled and colour else text


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    lines = [header, *rows] if header is not None else list(rows)
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)), row[-1]]
        )
        for row in lines
    )


def storage_text(status: StorageStatus) -> str:
    used = status.capacity - status.free
    return table(
        [
            ("workspace", status.path),
            ("capacity", human_size(status.capacity)),
            ("used", f"{human_size(used)} ({percent(used, status.capacity)})"),
            ("free", f"{human_size(status.free)} ({percent(status.free, status.capacity)})"),
            (
                "available",
                f"{human_size(status.available)} ({percent(status.available, status.capacity)})"
                " to dpmd",
            ),
        ],
    )


def _amount(progress: dict[str, Any]) -> str:
    done, total, unit = progress["done"], progress["total"], progress["unit"]
    if unit == "bytes":
        return f"{human_size(done)}/{human_size(total)}"
    return f"{done}/{total} {unit}"


def progress_text(progress: dict[str, Any] | None) -> str:
    """``merging 3/5 hdus (60.0%)``; ``-`` when the server reports no progress."""
    if not progress:
        return "-"
    share = f" ({percent(progress['done'], progress['total'])})" if progress["total"] else ""
    return f"{progress['stage']} {_amount(progress)}{share}"


def progress_bar(progress: dict[str, Any], width: int = 30) -> str:
    """``[##########--------------------]  33.3%  collecting 1.0 MiB/3.0 MiB``."""
    done, total = progress["done"], progress["total"]
    filled = min(width, width * done // total) if total > 0 else 0
    bar = "#" * filled + "-" * (width - filled)
    return f"[{bar}] {percent(done, total):>6}  {progress['stage']} {_amount(progress)}"


def alert_text(alert: DaqAlert, colour: bool) -> str:
    key = f"[{alert.key}]" if alert.key else ""
    label = paint(f"{alert.severity.value:<7}", SEVERITY_COLOURS[alert.severity], colour)
    return f"{label} {alert.category}{key}: {alert.description}"


def substate_text(substate: DaqSubState, colour: bool) -> str:
    return paint(substate.value, SUBSTATE_COLOURS.get(substate), colour)


def status_text(status: DaqStatus, colour: bool = False) -> str:
    """Every field of a ``DaqStatus``, one per line, alerts last."""
    rows = [
        ("id", status.id),
        ("file id", status.file_id),
        ("state", f"{status.state.value} / {substate_text(status.substate, colour)}"),
        ("error", "yes" if status.error else "no"),
        ("message", status.message or "-"),
        ("result", status.result or "-"),
        ("changed", utc_time(status.timestamp)),
    ]
    text = table(rows)
    alerts = [f"  {alert_text(alert, colour)}" for alert in status.alerts]
    return "\n".join([text, *(["alerts:", *alerts] if alerts else [])])


def event_line(status: DaqStatus, colour: bool) -> str:
    """One line per status change, for ``watch``: time, id, substate, message."""
    flag = paint(" ERROR", SEVERITY_COLOURS[AlertSeverity.Error], colour) if status.error else ""
    message = f"  {status.message}" if status.message else ""
    substate = substate_text(status.substate, colour)
    return f"{clock_time(status.timestamp)}  {status.id}  {substate}{flag}{message}"


def active_table(rows: Sequence[tuple[DaqStatus, dict[str, Any]]], now: float) -> str:
    """The ``active`` table; ``rows`` pair each status with its internal ``detail``."""
    if not rows:
        return "no active DAQs"
    lines = []
    for status, detail in rows:
        since = detail.get("queued_at") or status.timestamp
        lines.append(
            (
                status.id,
                status.substate.value,
                "yes" if status.error else "-",
                progress_text(detail.get("progress")),
                age(now - since),
            )
        )
    return table(lines, ("ID", "SUBSTATE", "ERROR", "PROGRESS", "AGE"))


_DETAIL_SHOWN = frozenset(
    {
        "queued_at",
        "started_at",
        "finished_at",
        "archived",
        "workspace",
        "progress",
        "sources",
        "processes",
        "history",
    }
)


def internal_text(status: DaqStatus, detail: dict[str, Any], colour: bool = False) -> str:
    """The status, then the server's bookkeeping: times, progress, sources, processes."""
    parts = [status_text(status, colour)]
    facts = [
        ("queued", utc_time(detail.get("queued_at"))),
        ("started", utc_time(detail.get("started_at"))),
        ("finished", utc_time(detail.get("finished_at"))),
        ("archived", "yes" if detail.get("archived") else "no"),
        ("workspace", str(detail.get("workspace", "-"))),
        ("progress", progress_text(detail.get("progress"))),
    ]
    # Whatever else the server reports, shown as it comes.
    facts += [
        (key, value if isinstance(value, str) else json.dumps(value))
        for key, value in detail.items()
        if key not in _DETAIL_SHOWN
    ]
    parts.append(table(facts))
    sources = detail.get("sources") or []
    if sources:
        rows = [
            (
                str(source.get("name", "")),
                str(source.get("state", "")),
                human_size(int(source.get("bytes") or 0)),
                str(source.get("local_path") or source.get("location", "")),
            )
            for source in sources
        ]
        parts.append("sources:\n" + table(rows, ("NAME", "STATE", "SIZE", "PATH")))
    processes = detail.get("processes") or []
    if processes:
        rows = [
            (str(p.get("kind", "")), str(p.get("pid", "")), " ".join(p.get("argv", [])))
            for p in processes
        ]
        parts.append("processes:\n" + table(rows, ("KIND", "PID", "COMMAND")))
    history = detail.get("history") or []
    if history:
        parts.append("history:\n" + "\n".join(f"  {_history_line(entry)}" for entry in history))
    return "\n".join(parts)


def _history_line(entry: Any) -> str:
    """``time  substate  message  other=fields``: the server's history entries, readable."""
    if not isinstance(entry, dict):
        return str(entry)
    when = entry.get("timestamp")
    words = [utc_time(when, True) if isinstance(when, int | float) else "-"]
    words += [str(entry[key]) for key in ("substate", "message") if entry.get(key)]
    words += [
        f"{key}={value}"
        for key, value in entry.items()
        if key not in ("timestamp", "substate", "message")
    ]
    return "  ".join(words)
