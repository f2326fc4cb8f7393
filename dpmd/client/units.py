"""Numbers and times as ``dpmctl`` shows them: binary sizes, percentages, ages, UTC times."""

from __future__ import annotations

import time

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


def duration(seconds: float) -> str:
    """A stage's time: ``0.41s``, ``12.3s``, then as ``age`` (``3m07s``)."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return age(seconds)
