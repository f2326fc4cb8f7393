"""What happened in the DAQ core, for observers that count it (the metrics).

Observers get plain facts after the store has them; they must be quick and
must not fail (an observer's error is logged, never the DAQ's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dpmd.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class StageEnded:
    """One run of a stage ended: it succeeded, or it failed with an Error alert."""

    daq_id: str
    stage: str
    """``collecting``, ``merging`` or ``releasing``."""
    succeeded: bool
    seconds: float
    attempts: int
    bytes: int
    """What it moved: the sources collected, the product merged, the copies released."""
    terminal: bool = False


class StageObservers:
    def __init__(self) -> None:
        self._observers: list[Callable[[StageEnded], None]] = []

    def add(self, observer: Callable[[StageEnded], None]) -> None:
        self._observers.append(observer)

    def tell(self, event: StageEnded) -> None:
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                log.failure("a stage observer failed on {event}", event=repr(event))
