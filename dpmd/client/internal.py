"""``dpmctl internal``: a DAQ's status with the server's bookkeeping, for operators.

The details the server documents (times, workspace, progress, where the
product is, its size and checksum, each stage's runs, sources, deliveries,
child processes, history) are laid out as tables; whatever else a server
reports is shown as it comes, so a newer server's details are never hidden.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from dpmd.client.progress import progress_text
from dpmd.client.render import column_table, key_value_table, status_view
from dpmd.client.units import clock_time, duration, human_size, utc_time
from dpmd.model import DaqStatus

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
        "product",
        "released",
        "workspace_removed",
        "product_digest",
        "product_size",
        "deliveries",
        "stages",
    }
)


def released_rows(detail: dict[str, Any]) -> list[tuple[str, str]]:
    """Where the product is: the receivers it went to, and (until archiving) its own file.

    Once a DAQ is archived its folder, where ``product`` pointed, is gone:
    the receivers are then the only places to find it.
    """
    released = detail.get("released") or {}
    rows: list[tuple[str, str]] = []
    if isinstance(released, dict):
        for key, where in released.items():
            if isinstance(where, dict) and "path" in where:
                how = f" ({where['how']})" if where.get("how") else ""
                rows.append((f"released[{key}]", f"{where['path']}{how}"))
            else:
                rows.append((f"released[{key}]", json.dumps(where)))
    product = detail.get("product")
    if product and not detail.get("archived"):
        rows.insert(0, ("product", str(product)))
    elif product and not rows:
        rows.append(("product", f"{product} (removed when the DAQ was archived)"))
    return rows


def product_rows(detail: dict[str, Any]) -> list[tuple[str, str]]:
    """The product's size and checksum as recorded before its first delivery."""
    rows = []
    digest = detail.get("product_digest")
    if isinstance(digest, dict) and "size" in digest:
        rows.append(("product size", f"{digest['size']} bytes"))
        rows.append(("product blake2b", str(digest.get("blake2b", "-"))))
    elif isinstance(detail.get("product_size"), int):
        rows.append(("product size", f"{detail['product_size']} bytes"))
    return rows


def _time_pair(started: Any, ended: Any) -> tuple[str, str]:
    """Start and end; the end as a time of day only when it is the same day."""
    begun = utc_time(started) if isinstance(started, int | float) else "-"
    if not isinstance(ended, int | float):
        return begun, "-"
    end = utc_time(ended)
    return begun, f"{clock_time(ended)}Z" if end[:10] == begun[:10] else end


def stage_rows(stages: dict[str, Any]) -> list[tuple[str, ...]]:
    """Per stage: its runs, the last one's start, end and time, and the last error."""
    rows: list[tuple[str, ...]] = []
    for name, run in stages.items():
        if not isinstance(run, dict):
            rows.append((str(name), "-", "-", "-", "-", json.dumps(run)))
            continue
        started, ended = run.get("started_at"), run.get("ended_at")
        if isinstance(started, int | float) and isinstance(ended, int | float):
            took = duration(ended - started)
        else:
            took = "running" if isinstance(started, int | float) else "-"
        rows.append((str(name), str(run.get("attempts", "-")), *_time_pair(started, ended),
                     took, str(run.get("last_error") or "-")))  # fmt: skip
    return rows


def delivery_rows(deliveries: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [
        (str(key), str(where.get("state", "-")), str(where.get("how", "-")),
         str(where.get("path", "-")))
        if isinstance(where, dict) else (str(key), "-", "-", json.dumps(where))
        for key, where in deliveries.items()
    ]  # fmt: skip


def internal_view(status: DaqStatus, detail: dict[str, Any]) -> RenderableType:
    """The status, then the server's bookkeeping: times, progress, product, stages, sources,
    deliveries, processes and history."""
    workspace = str(detail.get("workspace", "-"))
    if detail.get("workspace_removed"):
        workspace += " (removed by retention)"
    facts: list[tuple[str, str | Text]] = [
        ("queued", utc_time(detail.get("queued_at"))),
        ("started", utc_time(detail.get("started_at"))),
        ("finished", utc_time(detail.get("finished_at"))),
        ("archived", "yes" if detail.get("archived") else "no"),
        ("workspace", workspace),
        ("progress", progress_text(detail.get("progress"))),
        *released_rows(detail),
        *product_rows(detail),
    ]
    # Whatever else the server reports, shown as it comes.
    facts += [
        (key, value if isinstance(value, str) else json.dumps(value))
        for key, value in detail.items()
        if key not in _DETAIL_SHOWN
    ]
    parts: list[RenderableType] = [status_view(status), key_value_table(facts)]
    stages = detail.get("stages") or {}
    if isinstance(stages, dict) and stages:
        titles = ("STAGE", "RUNS", "STARTED", "ENDED", "TOOK", "LAST ERROR")
        parts += ["stages:", column_table(titles, stage_rows(stages))]
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
        parts += ["sources:", column_table(("NAME", "STATE", "SIZE", "PATH"), rows)]
    deliveries = detail.get("deliveries") or {}
    if isinstance(deliveries, dict) and deliveries:
        receivers = ("RECEIVER", "STATE", "HOW", "PATH")
        parts += ["deliveries:", column_table(receivers, delivery_rows(deliveries))]
    processes = detail.get("processes") or []
    if processes:
        commands = [
            (str(p.get("kind", "")), str(p.get("pid", "")), " ".join(p.get("argv", [])))
            for p in processes
        ]
        parts += ["processes:", column_table(("KIND", "PID", "COMMAND"), commands)]
    history = detail.get("history") or []
    if history:
        parts.append("history:")
        parts += [Text(f"  {_history_line(entry)}", overflow="fold") for entry in history]
    return Group(*parts)


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
