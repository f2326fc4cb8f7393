"""The interfaces on the wire: ``/dpm``, ``/daq`` and the topic commands.

This module is thin on purpose: it declares each method's parameters,
calls the part of the server that does the work and converts results to
their wire form.  The DPM's own refusal (``DaqError``) becomes the
``DaqException`` error of the contract here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from dpmd.daq.manager import DaqManager
from dpmd.encoding import PreEncoded
from dpmd.model import DaqError
from dpmd.rpc.errors import DAQ_EXCEPTION, INVALID_PARAMS, RpcError
from dpmd.rpc.methods import Method, Param, json_type_name, string_param
from dpmd.storage import StorageMonitor
from dpmd.topics import Subscriber, TopicHub, UnknownTopic

GOODBYE = "dpmd is shutting down"


def translate_error(error: BaseException) -> RpcError | None:
    """Map the DPM's refusal to JSON-RPC error -32000 with the contract's ``data``."""
    if isinstance(error, DaqError):
        data = {"exception": "DaqException", "id": error.daq_id, "message": error.message}
        return RpcError(DAQ_EXCEPTION, error.message, data)
    return None


class DpmControl:
    """``/dpm``: server control, not about any DAQ."""

    def __init__(self, storage: StorageMonitor, request_exit: Callable[[], None]) -> None:
        self._storage = storage
        self._request_exit = request_exit

    def query_storage_status(self) -> PreEncoded | Deferred[PreEncoded]:
        """From a sample at most ``storage.max_age`` old, encoded once per sample."""
        return self._storage.encoded()

    def exit(self) -> str:
        self._request_exit()
        return GOODBYE

    def methods(self) -> list[Method]:
        return [
            Method("/dpm/QueryStorageStatus", self.query_storage_status),
            Method("/dpm/Exit", self.exit),
        ]


TIMELINE_LIMIT = 10_000
"""The most DAQs one GetTimeline answers (a bound on its work)."""


def time_param(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be seconds since the epoch or null, not {json_type_name(value)}")
    return float(value)


def limit_param(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= TIMELINE_LIMIT:
        raise ValueError(f"must be an integer from 1 to {TIMELINE_LIMIT}")
    return value


def boolean_param(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {json_type_name(value)}")
    return value


def specification_param(value: Any) -> str | dict[str, Any]:
    if not isinstance(value, str | dict):
        raise ValueError(
            f"must be a string holding the specification JSON, or an object, "
            f"not {json_type_name(value)}"
        )
    return value


class DaqControl:
    """``/daq``: the lifecycle of DAQs, one method per command of the interface."""

    def __init__(self, manager: DaqManager) -> None:
        self._manager = manager

    def queue_daq(self, specification: str | dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self._manager.queue_daq(specification).addCallback(_wire)

    def abort_daq(self, id: str) -> Deferred[dict[str, Any]]:
        return self._manager.abort_daq(id).addCallback(_wire)

    def retry_merge_daq(self, id: str) -> Deferred[None]:
        return self._manager.retry_merge_daq(id).addCallback(lambda _: None)

    # The status commands answer a DAQ in memory at once (a plain value: no Deferred
    # chain), an archived one after a look-up in the store (a Deferred).

    def get_daq_status(self, id: str) -> PreEncoded | Deferred[dict[str, Any]]:
        return self._manager.get_daq_status(id)

    def get_active_daqs(self) -> PreEncoded:
        return self._manager.get_active_daqs()

    def get_internal_daq_status(self, id: str) -> dict[str, Any] | Deferred[dict[str, Any]]:
        return self._manager.get_internal_daq_status(id)

    def check_daq(self, specification: str | dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self._manager.check_daq(specification)

    def audit_workspace(self, repair: bool) -> Deferred[dict[str, Any]]:
        """``/dpm/AuditWorkspace``: about the workspace, but the DAQ core's knowledge."""
        return self._manager.audit_workspace(repair)

    def get_daq_provenance(self, id: str) -> Deferred[PreEncoded]:
        return self._manager.get_daq_provenance(id)

    def get_timeline(self, since: float | None, until: float | None,
                     limit: int) -> Deferred[dict[str, Any]]:  # fmt: skip
        return self._manager.get_timeline(since, until, limit)

    def methods(self) -> list[Method]:
        daq_id = (Param("id", string_param),)
        return [
            Method("/daq/QueueDaq", self.queue_daq,
                   (Param("specification", specification_param),)),
            Method("/daq/AbortDaq", self.abort_daq, daq_id),
            Method("/daq/RetryMergeDaq", self.retry_merge_daq, daq_id),
            Method("/daq/GetDaqStatus", self.get_daq_status, daq_id),
            Method("/daq/GetActiveDaqs", self.get_active_daqs),
            Method("/daq/GetInternalDaqStatus", self.get_internal_daq_status, daq_id),
            Method("/daq/GetDaqProvenance", self.get_daq_provenance, daq_id),
            Method("/daq/CheckDaq", self.check_daq,
                   (Param("specification", specification_param),)),
            Method("/dpm/AuditWorkspace", self.audit_workspace,
                   (Param("repair", boolean_param, False),)),
            Method("/daq/GetTimeline", self.get_timeline,
                   (Param("since", time_param, None), Param("until", time_param, None),
                    Param("limit", limit_param, 1000))),
        ]  # fmt: skip


def _wire(value: Any) -> Any:
    return value.to_json()


class Subscriptions:
    """``Subscribe`` and ``Unsubscribe``: a session's interest in a topic."""

    def __init__(self, hub: TopicHub) -> None:
        self._hub = hub

    def subscribe(self, session: Subscriber, topic: str) -> None:
        try:
            self._hub.subscribe(topic, session)
        except UnknownTopic as error:
            raise RpcError(INVALID_PARAMS, f"Subscribe: parameter 'topic': {error}") from None

    def unsubscribe(self, session: Subscriber, topic: str) -> None:
        try:
            self._hub.unsubscribe(topic, session)
        except UnknownTopic as error:
            raise RpcError(INVALID_PARAMS, f"Unsubscribe: parameter 'topic': {error}") from None

    def methods(self) -> list[Method]:
        topic = (Param("topic", string_param),)
        return [
            Method("Subscribe", self.subscribe, topic, takes_session=True),
            Method("Unsubscribe", self.unsubscribe, topic, takes_session=True),
        ]


def method_table(*interfaces: Any) -> dict[str, Method]:
    """Join the methods of several interfaces into one table, refusing duplicates."""
    table: dict[str, Method] = {}
    for interface in interfaces:
        for method in interface.methods():
            if method.name in table:
                raise ValueError(f"method {method.name} declared twice")
            table[method.name] = method
    return table
