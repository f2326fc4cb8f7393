"""What happened in the DAQ core, told to the rooms above that asked to know.

A lower room never calls back up into the room that made it: it announces
(``Observers.tell``) and whoever registered (``Observers.add``) hears it.
The core announces a finished DAQ (the manager files it away), a change the
store refused (the pipeline stops the DAQ's stage) and the end of each stage
run (``StageEnded``: the metrics count them).  Observers are told after the
store has what they hear of; they must be quick and must not fail (an
observer's error is logged, never the DAQ's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from dpmd.logs import get_logger

log = get_logger(__name__)

Event = TypeVar("Event")


class Observers(Generic[Event]):
    """The callables to tell of one kind of event, in the order they were added."""

    def __init__(self) -> None:
        self._observers: list[Callable[[Event], None]] = []

    def add(self, observer: Callable[[Event], None]) -> None:
        self._observers.append(observer)

    def tell(self, event: Event) -> None:
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                log.failure("an observer failed on {event}", event=repr(event))


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
