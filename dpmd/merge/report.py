"""What the merger tells its caller: JSON lines on stdout, or text for a human.

With --json every line on stdout is one JSON object (progress, heartbeat,
alert, plan, provenance, result, error) that the server can act on; the
human-readable log always goes to stderr so the two never mix.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from .plan import Alert, Plan

log = logging.getLogger("dpmd.merge")


#: Seconds without a line after which `Reporter.beat` prints a heartbeat.
HEARTBEAT_INTERVAL = 1.0


class Reporter:
    """Writes the JSON lines (or the human-readable text) of one run.

    `beat` is called from the merger's work loops; it prints
    `{"type":"heartbeat"}` when nothing was printed for HEARTBEAT_INTERVAL
    seconds, so that the caller's stall watchdog sees a long header
    computation alive. It is only ever called from those loops (there is no
    thread): a merger stuck inside one step stays silent, as it should.
    """

    def __init__(
        self,
        json_lines: bool,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.json_lines = json_lines
        self.stream = stream or sys.stdout
        self._clock = clock
        self._quiet_until = clock() + HEARTBEAT_INTERVAL

    def _emit(self, message: dict[str, Any]) -> None:
        self._write(json.dumps(message, separators=(",", ":")))

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
        self._quiet_until = self._clock() + HEARTBEAT_INTERVAL

    def beat(self) -> None:
        """A sign of life from a work loop: a heartbeat line if the last line is old."""
        if self.json_lines and self._clock() >= self._quiet_until:
            self._emit({"type": "heartbeat"})

    def progress(self, stage: str, total: int) -> Callable[[int], None]:
        """A callback that adds bytes done to `stage` and reports the new count."""
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            log.debug("%s: %d of %d bytes", stage, done, total)
            if self.json_lines:
                self._emit(
                    {
                        "type": "progress",
                        "stage": stage,
                        "done": done,
                        "total": total,
                        "unit": "bytes",
                    }
                )

        return advance

    def alert(self, alert: Alert) -> None:
        log.warning(
            "alert %s (%s, %s): %s", alert.category, alert.key, alert.severity, alert.description
        )
        if self.json_lines:
            self._emit(
                {
                    "type": "alert",
                    "category": alert.category,
                    "key": alert.key,
                    "severity": alert.severity,
                    "description": alert.description,
                }
            )

    def provenance(self, document: str) -> None:
        """The provenance line: `document` is the JSON object of dpmd.merge.provenance,
        already serialized (it can be large), given a `type` member first."""
        if self.json_lines:
            self._write('{"type":"provenance",' + document.removeprefix("{"))

    def result(self, path: str, size: int) -> None:
        log.info("wrote %s (%d bytes)", path, size)
        if self.json_lines:
            self._emit({"type": "result", "path": path, "size": size,
                        "peak_rss_bytes": peak_rss_bytes()})  # fmt: skip
        else:
            self.stream.write(path + "\n")

    def error(self, code: int, message: str) -> None:
        if self.json_lines:
            self._emit({"type": "error", "code": code, "message": message})

    def plan(self, plan: Plan) -> None:
        if self.json_lines:
            self._emit(
                {
                    "type": "plan",
                    "mode": plan.mode.value,
                    "path": plan.output,
                    "size": plan.size,
                    "header": [record.rstrip() for record in plan.header.records],
                    "hdus": [vars(entry) for entry in plan.hdus],
                }
            )
        else:
            self.stream.write("\n".join(describe(plan)) + "\n")


def peak_rss_bytes() -> int:
    """The most memory this process has held so far (``ru_maxrss``: KiB on Linux, bytes on
    macOS), so that the server's timeline has the merger's exact peak, not a sample."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def describe(plan: Plan) -> list[str]:
    """The planned product in words: mode, header cards, HDUs and sizes."""
    lines = [
        f"Product:  {plan.output}",
        f"Mode:     {plan.mode.value}",
        f"Size:     {plan.size} bytes",
        f"Primary header: {plan.header.blocks} block(s) of 2880 bytes "
        "(CHECKSUM and DATASUM are computed when written)",
    ]
    lines += ["  " + record.rstrip() for record in plan.header.records if record.strip()]
    lines.append("HDUs:")
    for entry in plan.hdus:
        name = f" {entry.extname!r}" if entry.extname else ""
        lines.append(
            f"  {entry.index:3d} {entry.kind:<8}{name} from {entry.origin}: "
            f"header {entry.header_size} bytes, data {entry.data_size} bytes"
        )
    for alert in plan.alerts:
        lines.append(
            f"Alert:    {alert.category} [{alert.key}] {alert.severity}: {alert.description}"
        )
    return lines
