"""The unfinished DAQs, in queue order.

A plain dict keeps insertion order, and DAQs are inserted in the order they
were queued (the intake hands them to the store in arrival order, and the
store answers in that order), so the queue order is never re-sorted:
adding, finding and removing a DAQ are O(1) whatever the queue's length.
"""

from __future__ import annotations

from collections.abc import Iterator

from dpmd.daq.lifecycle import Daq


class Registry:
    def __init__(self) -> None:
        self._daqs: dict[str, Daq] = {}

    def add(self, daq: Daq) -> None:
        self._daqs[daq.id] = daq

    def remove(self, daq: Daq) -> None:
        self._daqs.pop(daq.id, None)

    def get(self, daq_id: str) -> Daq | None:
        return self._daqs.get(daq_id)

    def __contains__(self, daq_id: object) -> bool:
        return daq_id in self._daqs

    def __iter__(self) -> Iterator[Daq]:
        return iter(self._daqs.values())

    def __len__(self) -> int:
        return len(self._daqs)

    def ids(self) -> set[str]:
        return set(self._daqs)
