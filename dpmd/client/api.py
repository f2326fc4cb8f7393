"""The DPM's interfaces as typed methods, over a connection from any connector.

Method names follow the ICD (``QueueDaq`` → ``queue_daq``); results are the
dataclasses of ``dpmd.model``, so a program sees the same types the server
uses.  Every method returns a future of the connector's framework: a
``Deferred`` from ``dpmd.client.connect``, an ``asyncio.Future`` from
``dpmd.client.aio.connect``.  Both can be awaited.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from dpmd.client.models import DaqCheck, Timeline, WorkspaceAudit, card_origins
from dpmd.client.session import Future, Session
from dpmd.model import DaqReply, DaqStatus, InternalDaqStatus, StorageStatus

DAQ_STATUS_TOPIC = "/daq/status"
DEFAULT_TIMELINE_LIMIT = 1000
"""The server's own default for ``GetTimeline``'s ``limit``; it allows at most 10000."""
STORAGE_TOPIC = "/dpm/storage"

TOPIC_TYPES: dict[str, Callable[[Any], Any]] = {
    DAQ_STATUS_TOPIC: DaqStatus.from_json,
    STORAGE_TOPIC: StorageStatus.from_json,
}
"""How the params of each known topic become an object; other topics give plain JSON."""


def _status_list(result: Any) -> list[DaqStatus]:
    if not isinstance(result, list):
        raise TypeError(f"expected an array, got {type(result).__name__}")
    return [DaqStatus.from_json(item) for item in result]


def _nothing(result: Any) -> None:
    if result is not None:
        raise ValueError("expected null")


def _time(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be seconds since the epoch or None, not {value!r}")
    return float(value)


def _specification_text(specification: str | Mapping[str, Any]) -> str:
    """The specification as the ICD sends it: a JSON string (a mapping is encoded here)."""
    if isinstance(specification, str):
        return specification
    try:
        return json.dumps(specification, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"specification is not JSON: {error}") from None


def _text(result: Any) -> str:
    if not isinstance(result, str):
        raise TypeError(f"expected a string, got {type(result).__name__}")
    return result


class DpmClient:
    """A connected client of one dpmd; make one with a connector's ``connect``."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def endpoint(self) -> str:
        """The endpoint string this client connected to, for messages."""
        return self._session.endpoint

    @property
    def connected(self) -> bool:
        return self._session.connected

    # -- /daq ---------------------------------------------------------------------

    def queue_daq(self, specification: str | Mapping[str, Any]) -> Future:
        """``QueueDaq``: a ``DaqReply`` once the DPM holds the DAQ durably.

        The specification goes on the wire as a JSON string, the ICD's form;
        a mapping is encoded here.
        """
        try:
            text = _specification_text(specification)
        except ValueError as error:
            return self._session.failed(error)
        return self._session.call("/daq/QueueDaq", {"specification": text}, DaqReply.from_json)

    def get_daq_status(self, daq_id: str) -> Future:
        """``GetDaqStatus``: a ``DaqStatus``."""
        return self._session.call("/daq/GetDaqStatus", {"id": daq_id}, DaqStatus.from_json)

    def get_active_daqs(self) -> Future:
        """``GetActiveDaqs``: a list of ``DaqStatus``, oldest first."""
        return self._session.call("/daq/GetActiveDaqs", None, _status_list)

    def get_internal_daq_status(self, daq_id: str) -> Future:
        """``GetInternalDaqStatus``: an ``InternalDaqStatus`` (also for archived DAQs)."""
        return self._session.call(
            "/daq/GetInternalDaqStatus", {"id": daq_id}, InternalDaqStatus.from_json
        )

    def abort_daq(self, daq_id: str) -> Future:
        """``AbortDaq``: a ``DaqReply`` once the DAQ is ``Aborted``."""
        return self._session.call("/daq/AbortDaq", {"id": daq_id}, DaqReply.from_json)

    def retry_merge_daq(self, daq_id: str) -> Future:
        """``RetryMergeDaq``: ``None`` as soon as the DAQ is unblocked."""
        return self._session.call("/daq/RetryMergeDaq", {"id": daq_id}, _nothing)

    def get_daq_provenance(self, daq_id: str) -> Future:
        """``GetDaqProvenance``: a list of ``CardOrigin``, one per card of the product's
        primary header, in header order (archived DAQs too; a DAQ not yet merged is
        refused with ``DaqError``)."""
        return self._session.call("/daq/GetDaqProvenance", {"id": daq_id}, card_origins)

    def get_timeline(
        self,
        since: float | None = None,
        until: float | None = None,
        limit: int = DEFAULT_TIMELINE_LIMIT,
    ) -> Future:
        """``GetTimeline``: a ``Timeline`` of the DAQs that finished between ``since``
        and ``until`` (Unix seconds; ``None`` leaves that end open), then those still
        running, oldest first, at most ``limit`` of them."""
        try:
            params = {"since": _time(since, "since"), "until": _time(until, "until")}
        except ValueError as error:
            return self._session.failed(error)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            return self._session.failed(ValueError(f"limit must be a positive integer: {limit!r}"))
        return self._session.call(
            "/daq/GetTimeline", {**params, "limit": limit}, Timeline.from_json
        )

    def check_daq(self, specification: str | Mapping[str, Any]) -> Future:
        """``CheckDaq``: a ``DaqCheck``, the dry run of a whole DAQ (nothing queued)."""
        try:
            text = _specification_text(specification)
        except ValueError as error:
            return self._session.failed(error)
        return self._session.call("/daq/CheckDaq", {"specification": text}, DaqCheck.from_json)

    # -- /dpm ---------------------------------------------------------------------

    def audit_workspace(self, repair: bool = False) -> Future:
        """``AuditWorkspace``: a ``WorkspaceAudit``; with ``repair`` what is safe is fixed."""
        if not isinstance(repair, bool):
            return self._session.failed(ValueError(f"repair must be True or False: {repair!r}"))
        return self._session.call(
            "/dpm/AuditWorkspace", {"repair": repair}, WorkspaceAudit.from_json
        )

    def query_storage_status(self) -> Future:
        """``QueryStorageStatus``: a ``StorageStatus`` of the workspace's file system."""
        return self._session.call("/dpm/QueryStorageStatus", None, StorageStatus.from_json)

    def exit(self) -> Future:
        """``Exit``: the server's goodbye text; the server then closes the connection."""
        return self._session.call("/dpm/Exit", None, _text)

    # -- topics and the connection ------------------------------------------------

    def subscribe(self, topic: str, callback: Callable[[Any], Any]) -> Future:
        """Call ``callback`` with each notification of ``topic``; ``None`` once subscribed.

        ``/daq/status`` gives ``DaqStatus`` objects and ``/dpm/storage``
        ``StorageStatus`` objects; other topics give the params as decoded JSON.
        """
        convert = TOPIC_TYPES.get(topic)
        if convert is None:
            return self._session.subscribe(topic, callback)
        return self._session.subscribe(topic, lambda params: callback(convert(params)))

    def unsubscribe(self, topic: str) -> Future:
        """Stop the notifications of ``topic`` (every callback of it)."""
        return self._session.unsubscribe(topic)

    def when_closed(self) -> Future:
        """Fires with a ``ConnectionLost`` that says why, once the connection ends."""
        return self._session.when_closed()

    def close(self) -> Future:
        """Close the connection; calls still waiting fail with ``ConnectionLost``."""
        return self._session.close()
