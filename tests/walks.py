"""Where control goes: the walk of a request through dpmd's rooms, hop by hop.

``Walk`` follows, with ``sys.setprofile``, the innermost frame that belongs to
one of dpmd's *rooms*: its modules, except its *tools* (``TOOLS``: the
specification's model, the configuration, the record, the wire's encoding and
the like — data and pure functions that call no room, which
``tests.test_walks`` checks from their imports) and the test fakes.  Tools,
Twisted and the standard library are seen through.  A *hop* is control passing
from one room to another: a *call* when a room calls into another (or Twisted
runs a callback of it), a *return* when control comes back into a room it had
left.  A room that is only used — called, and left again straight back to its
caller without reaching any other room — is a *use*, not part of the walk
(``walk.hops`` keeps what remains; ``walk.raw`` every hop).
``python -m tests.walks`` prints the two walks docs/workspace.md describes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

import dpmd

PACKAGE = str(Path(dpmd.__file__).parent) + "/"

TOOLS = (
    "spec/", "config/", "model.py", "record.py", "encoding.py", "locations.py", "lines.py",
    "logs.py", "suggest.py", "access.py", "daq/admission/rules.py", "rpc/methods.py",
    "rpc/errors.py",
)  # fmt: skip
"""Modules of data and pure functions (folders end in ``/``): using one is not a step."""
FAKES = ("testing.py",)
"""The test fakes of Twisted's reactor and of the store's threads: not dpmd's rooms."""


def room_of(name: str) -> str | None:
    """The room a dpmd file is (its path below dpmd/), or None for a tool or a fake."""
    if not name.startswith(PACKAGE):
        return None
    room = name[len(PACKAGE) :]
    if room.startswith(TOOLS) or room in FAKES:
        return None
    return room


def _ours(frame: FrameType | None) -> str | None:
    """The room of the innermost frame at or above ``frame`` that is in one."""
    while frame is not None:
        room = room_of(frame.f_code.co_filename)
        if room is not None:
            return room
        frame = frame.f_back
    return None


Hop = tuple[str, str, str]
"""``(kind, from room, to room)``, kind ``call`` or ``return``."""


def without_uses(hops: list[Hop]) -> list[Hop]:
    """The hops less each use: a call straight followed by the return from it."""
    kept: list[Hop] = []
    index = 0
    while index < len(hops):
        if index + 1 < len(hops):
            (kind, source, target), (back, came, to) = hops[index], hops[index + 1]
            if (kind, back, came, to) == ("call", "return", target, source):
                index += 2
                continue
        kept.append(hops[index])
        index += 1
    return kept


@dataclass
class Walk:
    raw: list[Hop] = field(default_factory=list)
    """Every hop between rooms, uses included."""
    _here: str | None = None

    def _profile(self, frame: FrameType, event: str, _arg: Any) -> None:
        if not self.following_now:
            return
        if event == "call":
            there = _ours(frame)
        elif event == "return":
            there = _ours(frame.f_back)
        else:
            return
        if there is None or there == self._here:
            self._here = there  # None: control left dpmd's rooms (back to the reactor)
            return
        if self._here is not None:
            self.raw.append((event, self._here, there))
        self._here = there

    following_now = False

    @contextmanager
    def following(self) -> Iterator[Walk]:
        previous = sys.getprofile()
        self.following_now = True
        sys.setprofile(self._profile)
        try:
            yield self
        finally:
            self.stop()
            sys.setprofile(previous)

    def stop(self) -> None:
        """Hops from now on are not the walk's (it has reached its end)."""
        self.following_now = False

    @property
    def hops(self) -> list[Hop]:
        """The walk: every hop between rooms but the uses."""
        return without_uses(self.raw)

    @property
    def files(self) -> list[str]:
        """Every room the walk visits, in the order first visited."""
        seen: dict[str, None] = {}
        for _, source, target in self.hops:
            seen.setdefault(source)
            seen.setdefault(target)
        return list(seen)

    @property
    def returns(self) -> int:
        """Hops that come back into a room the walk had left."""
        return sum(1 for kind, _, _ in self.hops if kind == "return")

    def entries(self, room: str) -> int:
        """How many times control came into ``room`` by a call, uses included."""
        return sum(1 for kind, _, target in self.raw if kind == "call" and target == room)

    def describe(self) -> str:
        lines = [f"{len(self.files)} rooms, {len(self.hops)} hops, {self.returns} returns"]
        lines += [f"  {kind:6} {source} -> {target}" for kind, source, target in self.hops]
        return "\n".join(lines)


def follow(action: Callable[[], Any]) -> Walk:
    walk = Walk()
    with walk.following():
        action()
    return walk


# -- the two walks docs/workspace.md describes ----------------------------------------------


def queue_daq_line(daq_id: str, location: str) -> bytes:
    from tests.daqharness import specification

    request = {"jsonrpc": "2.0", "id": 1, "method": "/daq/QueueDaq",
               "params": [json.dumps(specification(daq_id, location))]}  # fmt: skip
    return json.dumps(request).encode() + b"\n"


def queue_daq_walk(test: SynchronousTestCase) -> tuple[Walk, bytes]:
    """A QueueDaq from the line a client sent to its reply, on a server whose status
    topic has a subscriber and whose store commits on a later turn of the reactor (as
    the server's writer thread does): the walk and what the client got."""
    from twisted.internet.defer import Deferred

    from dpmd.api import DaqControl, method_table, translate_error
    from dpmd.rpc.dispatch import Dispatcher
    from dpmd.testing import connect_session
    from tests.daqharness import Harness

    h = Harness(test)

    def on_a_later_turn(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        h.reactor.callLater(0, lambda: done.callback(function(*args)))
        return done

    h.run_writer = on_a_later_turn
    dispatcher = Dispatcher(method_table(DaqControl(h.manager)), translate_error)
    session, transport = connect_session(dispatcher, h.hub)
    line = queue_daq_line("WALK.1", h.source("a.fits"))

    walk = Walk()
    write = transport.write

    def reply_written(data: bytes) -> None:
        write(data)
        walk.stop()  # the walk ends where the reply leaves

    transport.write = reply_written  # type: ignore[method-assign]
    with walk.following():
        session.dataReceived(line)
        while walk.following_now:
            h.reactor.advance(0)
    return walk, transport.value()


def life_walk(test: SynchronousTestCase) -> tuple[Walk, str]:
    """One DAQ from ``QueueDaq`` to ``Completed`` (the merger played by the test): the
    walk and the DAQ's final substate."""
    from tests.daqharness import Harness, specification

    h = Harness(test)

    def life() -> None:
        h.manager.queue_daq(specification("LIFE.1", h.source("a.fits")))
        h.settle()
        h.finish_merge()

    walk = follow(life)
    return walk, h.status("LIFE.1").substate.value


def main() -> None:
    """Print both walks; the harness's files go to a temporary folder, not the checkout."""
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        walk_both()


def walk_both() -> None:
    case = SynchronousTestCase()
    try:
        walk, _ = queue_daq_walk(case)
        print("QueueDaq, from the line to the reply:", walk.describe(), sep="\n")
        life, _ = life_walk(case)
        print("\nOne DAQ from QueueDaq to Completed:", life.describe(), sep="\n")
        print(f"calls into daq/manager.py: {life.entries('daq/manager.py')}")
    finally:
        case.doCleanups()


if __name__ == "__main__":
    main()
