"""Progress as text (``merging 3/5 hdus (60.0%)``) and as live rows with a bar.

A progress whose total is 0 has no size: it is a step that says what it does
(``waiting for a merge slot (2 of limits.merge = 2 in use)``), shown as its
text alone, without an amount, a share or a bar that would read ``0 B/0 B``.

A live row is redrawn in place, so it must never be wider than the terminal:
a row that wraps takes two lines, and the redraw, which moves up by the rows
it drew, would leave the second one behind.  ``progress_rows`` lays a row
out for the width it is given, which the watch reads at every redraw.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from dpmd.client.units import human_size, percent


def _amount(progress: dict[str, Any]) -> str:
    done, total, unit = progress["done"], progress["total"], progress["unit"]
    if unit == "bytes":
        return f"{human_size(done)}/{human_size(total)}"
    return f"{done}/{total} {unit}"


def progress_text(progress: dict[str, Any] | None) -> str:
    """``merging 3/5 hdus (60.0%)``; the stage alone when it has no size; ``-`` for none."""
    if not progress:
        return "-"
    if not progress["total"]:
        return str(progress["stage"])
    share = percent(progress["done"], progress["total"])
    return f"{progress['stage']} {_amount(progress)} ({share})"


BAR_WIDTH = (10, 40)
"""Narrowest and widest progress bar: narrower says nothing, wider only takes room."""


def progress_rows(daq_id: str, progress: dict[str, Any], width: int) -> list[Text | Group]:
    """One DAQ's live progress in ``width`` columns, each row shorter than the width.

    ``ID  [bar] 25.0%  collecting 1.0 MiB/4.0 MiB`` on one row when it fits;
    otherwise the id on a row of its own above the rest, which drops the bar
    and then cuts the text (with an ellipsis) before it would wrap, since a
    wrapped row would leave a stale line at every redraw.  A progress with
    no size is ``ID  stage`` (or the id above the stage), without a bar.
    """
    done, total = progress["done"], progress["total"]
    room = width - 1  # the last column is left free: some terminals wrap when it is written
    if not total:
        stage = str(progress["stage"])
        if len(daq_id) + 2 + len(stage) <= room:
            return [Text(f"{daq_id}  {stage}")]
        return [_cut(daq_id, room), _cut(f"  {stage}", room)]
    share = f"{percent(done, total):>6}"
    detail = f"{progress['stage']} {_amount(progress)}"
    fixed = len(share) + 2 + len(detail)
    one_row = room - len(daq_id) - 2 - 1 - fixed
    if one_row >= BAR_WIDTH[0]:
        return [_bar_row(f"{daq_id}  ", min(one_row, BAR_WIDTH[1]), done, total, share, detail)]
    rows: list[Text | Group] = [_cut(daq_id, room)]
    bar = room - 2 - 1 - fixed
    if bar >= BAR_WIDTH[0]:
        rows.append(_bar_row("  ", min(bar, BAR_WIDTH[1]), done, total, share, detail))
    else:
        rows.append(_cut(f"  {share.strip()}  {detail}", room))
    return rows


def _bar_row(lead: str, bar: int, done: int, total: int, share: str, detail: str) -> Group:
    grid = Table.grid()
    grid.add_column(no_wrap=True)
    grid.add_column(width=bar)
    grid.add_column(no_wrap=True)
    grid.add_row(
        lead,
        ProgressBar(total=max(total, 1), completed=min(done, max(total, 1)), width=bar),
        f" {share}  {detail}",
    )
    return Group(grid)


def _cut(text: str, room: int) -> Text:
    if len(text) <= room:
        return Text(text)
    return Text(text[: max(0, room - 1)] + "…")
