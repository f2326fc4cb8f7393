"""The end of every Deferred chain that nobody waits for: no Deferred is dropped."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from dpmd.daq.store import StoreError
from dpmd.logs import get_logger

log = get_logger(__name__)


def settle(deferred: Deferred[Any], what: str, **fields: Any) -> None:
    """End a chain nobody waits for: a store failure is already the DAQ's alert; the
    rest is logged."""

    def ended(failure: Failure) -> None:
        if failure.check(StoreError, CancelledError):
            return
        log.failure("{what} failed", failure, what=what, **fields)

    deferred.addErrback(ended)
