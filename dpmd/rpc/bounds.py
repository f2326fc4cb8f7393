"""Bounds shared by every connection of one server: how many, and how much unread input.

Per-connection bounds (line length, requests in flight) cannot stop many
connections together: 40 clients each sending 15 MiB of an unfinished line
took dpmd from 111 to 671 MiB, and 1,100 idle sockets used up the file
descriptors, so a new client's request was lost.  So one ``ServerBounds``
object is given to the factory of every listener:

* ``max_connections``: a connection beyond it is closed as soon as it is
  accepted, and the refusal is logged;
* ``max_buffered_bytes``: input read from clients and not yet handled, in
  all.  The first ``FREE_INPUT_BYTES`` of each connection are not counted,
  so ordinary requests always get through; a connection that needs more
  while the budget is spent stops being read (TCP then holds the client
  back) until other connections have handed their lines on.
"""

from __future__ import annotations

from typing import Protocol

FREE_INPUT_BYTES = 64 * 1024
"""Input each connection may hold without drawing on the shared budget."""


class BudgetWaiter(Protocol):
    """A connection that stopped reading until the shared input budget has room again."""

    def input_budget_available(self) -> None: ...


class ServerBounds:
    """The connection count and the input budget of one server, across its listeners."""

    def __init__(
        self, max_connections: int = 200, max_buffered_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self.max_connections = max_connections
        self.max_buffered_bytes = max_buffered_bytes
        self.connections = 0
        self.buffered_bytes = 0
        """Bytes drawn on the budget now (input beyond each connection's free share)."""
        self._waiting: dict[BudgetWaiter, None] = {}

    # -- connections ----------------------------------------------------------------

    def admit(self) -> bool:
        """Count a new connection if there is room for it."""
        if self.connections >= self.max_connections:
            return False
        self.connections += 1
        return True

    def release(self) -> None:
        self.connections -= 1

    # -- the input budget -----------------------------------------------------------

    @staticmethod
    def charge_for(buffered: int) -> int:
        """What a connection holding ``buffered`` bytes draws on the budget."""
        return buffered - FREE_INPUT_BYTES if buffered > FREE_INPUT_BYTES else 0

    def recharge(self, before: int, after: int) -> None:
        """A connection's draw changed from ``before`` to ``after``."""
        self.buffered_bytes += after - before
        if after < before and self._waiting and self.buffered_bytes < self.max_buffered_bytes:
            waiting, self._waiting = list(self._waiting), {}
            for waiter in waiting:
                waiter.input_budget_available()

    def exhausted(self) -> bool:
        return self.buffered_bytes > self.max_buffered_bytes

    def wait(self, waiter: BudgetWaiter) -> None:
        """Tell ``waiter`` once others have returned some of the budget."""
        self._waiting[waiter] = None

    def forget(self, waiter: BudgetWaiter) -> None:
        self._waiting.pop(waiter, None)
