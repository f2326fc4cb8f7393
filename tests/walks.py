"""Where control goes: the walk of a request through dpmd's files, hop by hop.

``Walk`` follows the innermost frame that is dpmd's own (Twisted's and the
standard library's frames are seen through) with ``sys.setprofile``.  A *hop*
is control passing from one dpmd file to another: a *call* when a file calls
into another (or Twisted runs a callback of it), a *return* when control
comes back into a file it had left.  ``python -m tests.walks`` prints the
walks that docs/workspace.md describes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import dpmd

PACKAGE = str(Path(dpmd.__file__).parent) + "/"


def _ours(frame: FrameType | None) -> str | None:
    """The dpmd file of the innermost dpmd frame at or above ``frame``."""
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(PACKAGE):
            return name[len(PACKAGE) :]
        frame = frame.f_back
    return None


@dataclass
class Walk:
    hops: list[tuple[str, str, str]] = field(default_factory=list)
    """``(kind, from file, to file)``, kind ``call`` or ``return``."""
    _here: str | None = None

    def _profile(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event == "call":
            there = _ours(frame)
        elif event == "return":
            there = _ours(frame.f_back)
        else:
            return
        if there is None or there == self._here:
            if there is not None:
                self._here = there
            return
        if self._here is not None:
            self.hops.append((event, self._here, there))
        self._here = there

    @contextmanager
    def following(self) -> Iterator[Walk]:
        previous = sys.getprofile()
        sys.setprofile(self._profile)
        try:
            yield self
        finally:
            sys.setprofile(previous)

    @property
    def files(self) -> list[str]:
        """Every file visited, in the order first visited."""
        seen: dict[str, None] = {}
        for _, source, target in self.hops:
            seen.setdefault(source)
            seen.setdefault(target)
        return list(seen)

    @property
    def returns(self) -> int:
        return sum(1 for kind, _, _ in self.hops if kind == "return")

    def entries(self, file: str) -> int:
        """How many times control came into ``file`` from another file by a call."""
        return sum(1 for kind, _, target in self.hops if kind == "call" and target == file)

    def describe(self) -> str:
        lines = [f"{len(self.files)} files, {len(self.hops)} hops, {self.returns} returns"]
        lines += [f"  {kind:6} {source} -> {target}" for kind, source, target in self.hops]
        return "\n".join(lines)


def follow(action: Callable[[], Any]) -> Walk:
    walk = Walk()
    with walk.following():
        action()
    return walk
