"""The DAQs by substate, their active alerts and the queue, kept from ``/daq/status``.

The tally is a subscriber of the topic like any client session.  Each
status replaces what the tally remembered of that DAQ (its substate and the
labels of its alerts): the old one is taken off the counts, the new one put
on, so an event costs O(1) in the number of DAQs (O(alerts) of that DAQ) and
a scrape reads a handful of counters, never the DAQs.  At a DAQ's final
status (Completed or Aborted, after which it is archived) the tally forgets
it and counts it as finished.

The queue is the ``Scheduled`` DAQs in the order they were queued (an
``OrderedDict``, whose first entry and arbitrary removal are O(1)): the
first one is the oldest, its age the time since it was queued.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from dpmd.encoding import PreEncoded
from dpmd.logs import get_logger
from dpmd.model import DaqSubState

log = get_logger(__name__)

S = DaqSubState

UNFINISHED = (S.Scheduled, S.Collecting, S.Merging, S.Releasing, S.Aborting)
"""The substates a DAQ of dpmd is in until it is finished (always reported, 0 or not)."""
FINAL = (S.Completed, S.Aborted)

AlertLabel = tuple[str, str]
"""(category, severity) of one active alert."""


class DaqTally:
    """Counts kept from the statuses of ``/daq/status``, in order."""

    def __init__(self) -> None:
        self.by_substate: dict[str, int] = {substate.value: 0 for substate in UNFINISHED}
        self.finished: dict[str, int] = {substate.value: 0 for substate in FINAL}
        self.alerts: dict[AlertLabel, int] = {}
        """Active alerts by label; a label once seen stays (at 0 when none is active)."""
        self._last: dict[str, tuple[str, tuple[AlertLabel, ...]]] = {}
        self._queued: OrderedDict[str, float] = OrderedDict()

    # -- what the tally hears ------------------------------------------------------------

    def send_notification(self, topic: str, params: Any, coalesce_key: str | None = None) -> None:
        """A ``/daq/status`` notification: the status as JSON text (or as its dict)."""
        try:
            status = json.loads(params.json) if isinstance(params, PreEncoded) else params
            self.update(status, float(status["timestamp"]))
        except Exception:
            log.failure("metrics: a status could not be counted: {params!r}",
                        params=getattr(params, "json", params))  # fmt: skip

    def seed(self, statuses: Iterable[tuple[dict[str, Any], float]]) -> None:
        """The unfinished DAQs at start-up, oldest first: (wire status, time queued)."""
        for status, queued_at in statuses:
            self.update(status, queued_at)

    def update(self, status: dict[str, Any], queued_at: float) -> None:
        """Count ``status``; ``queued_at`` is used when it is the DAQ's first Scheduled one."""
        daq_id = status["id"]
        substate = status["substate"]
        labels = tuple((alert["category"], alert["severity"]) for alert in status["alerts"])
        before = self._last.get(daq_id)
        if before is not None:
            self.by_substate[before[0]] -= 1
            for label in before[1]:
                self.alerts[label] -= 1
        if substate in self.finished:
            self._last.pop(daq_id, None)
            self._queued.pop(daq_id, None)
            self.finished[substate] += 1
            return
        self._last[daq_id] = (substate, labels)
        self.by_substate[substate] = self.by_substate.get(substate, 0) + 1
        for label in labels:
            self.alerts[label] = self.alerts.get(label, 0) + 1
        if substate == S.Scheduled.value:
            if daq_id not in self._queued:
                self._queued[daq_id] = queued_at
        else:
            self._queued.pop(daq_id, None)

    # -- what a scrape reads ------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._queued)

    def oldest_queued_age(self, now: float) -> float:
        """Seconds since the oldest Scheduled DAQ was queued; 0 when none waits."""
        if not self._queued:
            return 0.0
        return max(0.0, now - next(iter(self._queued.values())))
