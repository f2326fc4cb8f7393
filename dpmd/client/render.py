"""What ``dpmctl`` shows people: status lines, alerts, tables and the server's details.

Everything here is a pure function of its arguments (the current time is
passed in) that returns text or a ``rich`` renderable; ``dpmd.client.console``
decides where it goes, how wide it may be and whether it is in colour.
Styles are attached to spans of ``rich.text.Text``, never written as markup,
so that nothing a server sends (``SourceFileCollectionError[fcs]``) can be
taken for a style.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from dpmd.client.progress import progress_text
from dpmd.client.units import age, clock_time, human_size, percent, utc_time
from dpmd.model import AlertSeverity, DaqAlert, DaqStatus, DaqSubState, StorageStatus

SEVERITY_STYLES = {
    AlertSeverity.Error: "bold red",
    AlertSeverity.Warning: "yellow",
    AlertSeverity.Info: "cyan",
}
SUBSTATE_STYLES = {
    DaqSubState.Completed: "green",
    DaqSubState.Aborted: "red",
    DaqSubState.Aborting: "red",
}


def key_value_table(rows: Sequence[tuple[str, str | Text]]) -> Table:
    """Names in the first column, values in the second, wrapped to the width if need be."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row(name, value)
    return grid


def column_table(header: Sequence[str], rows: Sequence[Sequence[str | Text]]) -> Table:
    """Columns two spaces apart under a header line, as ``ps`` and ``df`` print them."""
    table = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False, header_style="")
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def storage_view(status: StorageStatus) -> Table:
    used = status.capacity - status.free
    return key_value_table(
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


NOT_TERMINAL = "retrying may help"
TERMINAL = "retry will not help until the cause is fixed"


def alert_hint(alert: DaqAlert) -> str:
    """For an Error alert, how often its stage ran and whether a retry can help; else ``""``.

    ``terminal`` is the server's judgement: the description says what must
    change (the specification, a source, the configuration) first.  An alert
    with neither (``attempts`` 0, not terminal) is from a server that does not
    say, or not about a stage's run: nothing is claimed for it.
    """
    if alert.severity is not AlertSeverity.Error or not (alert.terminal or alert.attempts):
        return ""
    runs = ""
    if alert.attempts > 0:
        runs = f"{alert.attempts} attempt{'' if alert.attempts == 1 else 's'}; "
    return runs + (TERMINAL if alert.terminal else NOT_TERMINAL)


def alert_text(alert: DaqAlert) -> Text:
    key = f"[{alert.key}]" if alert.key else ""
    text = Text(f"{alert.severity.value:<7}", style=SEVERITY_STYLES[alert.severity], end="")
    text = Text.assemble(text, f" {alert.category}{key}: {alert.description}")
    hint = alert_hint(alert)
    if hint:
        text.append(f" ({hint})")
    return text


def substate_text(substate: DaqSubState) -> Text:
    return Text(substate.value, style=SUBSTATE_STYLES.get(substate, ""))


def status_view(status: DaqStatus, note: str = "") -> RenderableType:
    """Every field of a ``DaqStatus``, one per line, alerts last; ``note`` after the state."""
    state = Text(f"{status.state.value} / ")
    state.append_text(substate_text(status.substate))
    if note:
        state.append(f" ({note})")
    rows: list[tuple[str, str | Text]] = [
        ("id", status.id),
        ("file id", status.file_id),
        ("state", state),
        ("error", "yes" if status.error else "no"),
        ("message", status.message or "-"),
        ("result", status.result or "-"),
        ("changed", utc_time(status.timestamp)),
    ]
    parts: list[RenderableType] = [key_value_table(rows)]
    if status.alerts:
        parts.append("alerts:")
        parts += [Text("  ").append_text(alert_text(alert)) for alert in status.alerts]
    return Group(*parts)


def event_line(status: DaqStatus) -> Text:
    """One line per status change, for ``watch``: time, id, substate, message."""
    line = Text(f"{clock_time(status.timestamp)}  {status.id}  ")
    line.append_text(substate_text(status.substate))
    if status.error:
        line.append(" ERROR", style=SEVERITY_STYLES[AlertSeverity.Error])
    if status.message:
        line.append(f"  {status.message}")
    return line


def active_view(rows: Sequence[tuple[DaqStatus, dict[str, Any]]], now: float) -> RenderableType:
    """The ``active`` table; ``rows`` pair each status with its internal ``detail``."""
    if not rows:
        return Text("no active DAQs")
    cells = []
    for status, detail in rows:
        since = detail.get("queued_at") or status.timestamp
        cells.append(
            (
                status.id,
                substate_text(status.substate),
                Text("yes", style=SEVERITY_STYLES[AlertSeverity.Error]) if status.error else "-",
                progress_text(detail.get("progress")),
                age(now - since),
            )
        )
    return Narrow(
        column_table(("ID", "SUBSTATE", "ERROR", "PROGRESS", "AGE"), cells),
        Group(*(_stacked(row) for row in cells)),
    )


def _stacked(row: Sequence[str | Text]) -> Group:
    """A row of the ``active`` table for a narrow terminal: the id, then the rest indented."""
    rest = Text("  ").join(Text(cell) if isinstance(cell, str) else cell for cell in row[1:])
    return Group(Text(str(row[0]), overflow="fold"), Padding(rest, (0, 0, 0, 2)))


class Narrow:
    """``wide`` when it fits the width without wrapping a cell, else ``narrow``."""

    def __init__(self, wide: RenderableType, narrow: RenderableType) -> None:
        self.wide = wide
        self.narrow = narrow

    def __rich_console__(self, console: Any, options: Any) -> Any:
        needed = Measurement.get(console, options.update(width=10**6), self.wide).maximum
        yield self.wide if needed <= options.max_width else self.narrow
