"""``dpmctl watch``: follow ``/daq/status`` and show progress while DAQs work.

``Watcher`` keeps the newest status of each DAQ from the notifications (plus
one initial query, so a DAQ that does not change is still shown) and, about
once a second, asks ``GetInternalDaqStatus`` for the progress of the DAQs
being collected or merged.  What it learns goes to a view: ``WatchView``
writes JSON lines, plain lines, or, on a terminal, event lines with a block
of live progress bars kept below them.
"""

from __future__ import annotations

from typing import Any, Protocol

from rich.console import Group
from rich.live import Live
from rich.text import Text
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from dpmd.client.api import DAQ_STATUS_TOPIC, DpmClient
from dpmd.client.console import Console
from dpmd.client.errors import ConnectionLost, DaqError, ProtocolError, RpcError
from dpmd.client.progress import progress_rows, progress_text
from dpmd.client.render import alert_text, event_line
from dpmd.client.units import clock_time
from dpmd.model import DaqStatus, DaqSubState, InternalDaqStatus

POLLED = frozenset({DaqSubState.Collecting, DaqSubState.Merging})
"""Substates whose progress is worth asking for."""

POLL_INTERVAL = 1.0


class View(Protocol):
    """Where ``dpmctl watch`` puts what it hears (``WatchView`` shows it, ``SilentView``
    does not)."""

    def status(self, status: DaqStatus) -> None: ...

    def progress(self, daq_id: str, progress: dict[str, Any] | None, now: float) -> None: ...

    def close(self) -> None: ...


class SilentView:
    """For ``demo --json``: watch without showing anything."""

    def status(self, status: DaqStatus) -> None:
        pass

    def progress(self, daq_id: str, progress: dict[str, Any] | None, now: float) -> None:
        pass

    def close(self) -> None:
        pass


class WatchView:
    """Writes what the watcher learns to a ``Console`` in one of three styles.

    * JSON: one object per line, ``{"event": "status", "status": …}`` or
      ``{"event": "progress", "id": …, "progress": …}`` (progress only when
      it changed);
    * plain (not a terminal): one line per status change, alerts when they
      appear or clear, and a progress line per stage and tenth of the way;
    * terminal: the same lines, in colour if wanted, with a live progress bar
      per DAQ below them, redrawn in place by ``rich.live``.  Each bar's row
      is laid out for the terminal's width at every redraw (``progress_rows``)
      so that none wraps: a wrapped row would leave a stale line behind.

    ``close`` ends the live display (and gives the cursor back); call it
    whatever way the watch ends.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._json = console.as_json
        self._terminal = console.terminal and not console.as_json
        self._alerts: dict[str, dict[tuple[str, str], str]] = {}
        """Per DAQ, each active alert's shown text: a line is printed when it changes."""
        self._progress: dict[str, dict[str, Any] | None] = {}
        self._steps: dict[str, tuple[str, int]] = {}
        self._bars: dict[str, dict[str, Any]] = {}
        self._live: Live | None = None

    def status(self, status: DaqStatus) -> None:
        if self._json:
            self._console.json({"event": "status", "status": status.to_json()})
            return
        lines = [event_line(status), *self._alert_changes(status)]
        if status.substate not in POLLED:
            self._bars.pop(status.id, None)
            self._steps.pop(status.id, None)
        self._emit(lines)

    def progress(self, daq_id: str, progress: dict[str, Any] | None, now: float) -> None:
        if self._json:
            if self._progress.get(daq_id) != progress:
                self._progress[daq_id] = progress
                self._console.json({"event": "progress", "id": daq_id, "progress": progress})
            return
        if progress is None:
            return
        if self._terminal:
            self._bars[daq_id] = progress
            self._emit([])
            return
        tenth = 10 * progress["done"] // progress["total"] if progress["total"] > 0 else 0
        step = (progress["stage"], tenth)
        if self._steps.get(daq_id) != step:
            self._steps[daq_id] = step
            self._emit([Text(f"{clock_time(now)}  {daq_id}  {progress_text(progress)}")])

    def close(self) -> None:
        if self._live is not None:
            self._bars.clear()
            self._live.stop()
            self._live = None

    def _alert_changes(self, status: DaqStatus) -> list[Text]:
        """Lines for alerts that are new or changed, and for those that cleared."""
        before = self._alerts.get(status.id, {})
        texts = {(alert.category, alert.key): alert_text(alert) for alert in status.alerts}
        now = {condition: text.plain for condition, text in texts.items()}
        self._alerts[status.id] = now
        lines = [
            Text("    ").append_text(text)
            for condition, text in texts.items()
            if before.get(condition) != now[condition]
        ]
        for category, key in sorted(before.keys() - now.keys()):
            lines.append(Text(f"    cleared {category}{f'[{key}]' if key else ''}"))
        return lines

    def _emit(self, lines: list[Text]) -> None:
        if not self._terminal:
            for line in lines:
                self._console.print(line)
            return
        if self._live is None:
            self._live = Live(
                console=self._console.rich,
                auto_refresh=False,  # no thread: the reactor's turns redraw it
                redirect_stdout=False,
                redirect_stderr=False,
                get_renderable=self._bar_rows,
            )
            self._live.start()
        for line in lines:
            self._console.rich.print(line)  # above the bars, which rich then redraws
        self._live.refresh()
        self._console.out.flush()

    def _bar_rows(self) -> Group:
        width = self._console.rich.width
        bars = self._bars.items()
        return Group(*(row for daq_id, step in bars for row in progress_rows(daq_id, step, width)))


class Watcher:
    """Follows one DAQ until it is final, or every DAQ until the connection ends."""

    def __init__(
        self,
        client: DpmClient,
        clock: IReactorTime,
        view: View,
        daq_id: str | None = None,
        stop_on_error: bool = False,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self._client = client
        self._clock = clock
        self._view = view
        self._daq_id = daq_id
        self._stop_on_error = stop_on_error
        self._interval = interval
        self._latest: dict[str, DaqStatus] = {}
        self._polling: set[str] = set()
        self._finished: Deferred[DaqStatus] = Deferred()

    async def run(self) -> DaqStatus:
        """The watched DAQ's last status: final, or with its error flag if ``stop_on_error``.

        Without a DAQ id it only ends by failing with ``ConnectionLost``.
        """
        await self.subscribe()
        return await self.follow()

    async def subscribe(self) -> None:
        """Start listening; a caller that is about to create the DAQ does this first."""
        await self._client.subscribe(DAQ_STATUS_TOPIC, self._update)

    async def follow(self) -> DaqStatus:
        """Show the current state, then follow it; ``run`` after ``subscribe``."""
        if self._daq_id is None:
            for status in await self._client.get_active_daqs():
                self._update(status)
        else:
            # GetInternalDaqStatus, not GetDaqStatus: it also answers once the DAQ is archived.
            internal = await self._client.get_internal_daq_status(self._daq_id)
            self._update(internal.status)
            if not self._finished.called:
                self._show_progress(internal)
        self._client.when_closed().addCallback(self._connection_ended)
        poller = LoopingCall(self._poll)
        poller.clock = self._clock
        if not self._finished.called:
            # One DAQ's progress came with the first answer; for all DAQs, ask at once.
            poller.start(self._interval, now=self._daq_id is None)
        try:
            return await self._finished
        finally:
            if poller.running:
                poller.stop()

    def _update(self, status: DaqStatus) -> None:
        if self._daq_id is not None and status.id != self._daq_id:
            return
        known = self._latest.get(status.id)
        if known is not None and (status == known or status.timestamp < known.timestamp):
            return  # a notification older than the initial query's answer, or the same
        self._latest[status.id] = status
        self._view.status(status)
        if self._finished.called or status.id != self._daq_id:
            return
        if status.substate.is_final or (self._stop_on_error and status.error):
            self._finished.callback(status)

    def _poll(self) -> None:
        for daq_id, status in self._latest.items():
            if status.substate in POLLED and daq_id not in self._polling:
                self._polling.add(daq_id)
                query = self._client.get_internal_daq_status(daq_id)
                query.addCallbacks(self._show_progress, self._poll_failed)
                query.addBoth(lambda _, daq_id=daq_id: self._polling.discard(daq_id))

    def _show_progress(self, internal: InternalDaqStatus) -> None:
        daq_id = internal.status.id
        if internal.status.timestamp > self._latest[daq_id].timestamp:
            # A change whose notification has not come (or never will): the watch must
            # not wait forever for a DAQ that the poll shows finished.
            self._update(internal.status)
        if self._latest[daq_id].substate in POLLED:
            self._view.progress(daq_id, internal.detail.get("progress"), self._clock.seconds())

    def _poll_failed(self, failure: Failure) -> None:
        # Progress is a nicety: the status stream and the connection report real trouble.
        failure.trap(ConnectionLost, DaqError, RpcError, ProtocolError)

    def _connection_ended(self, reason: ConnectionLost) -> None:
        if not self._finished.called:
            self._finished.errback(reason)
