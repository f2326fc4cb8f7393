"""Output held for a client that is not reading: replies in order, notifications coalesced.

When the transport's write buffer is full (a slow reader: the transport
called ``pauseProducing``), a session holds its lines here until it may
write again.  A notification with a coalescing key (a DAQ's status) replaces
the unsent older one with the same key: the older one gives up its bytes at
once and keeps its place as an empty slot, and once empty slots are most of
what is held they are dropped, so a client that reads nothing costs one line
per key, not one per event.

The session (``dpmd.rpc.protocol``) owns the one ``Outbox`` of its
connection and decides when to hold a line and when to write; this room
only keeps them, and calls nothing.
"""

from __future__ import annotations

from collections import deque

COMPACT_AFTER = 64
"""Empty slots tolerated before they are dropped (and only while they are most of the queue)."""


class _Outgoing:
    """A held line; a superseded notification drops its bytes (``line`` None)."""

    __slots__ = ("key", "line")

    def __init__(self, line: bytes, key: tuple[str, str] | None = None) -> None:
        self.line: bytes | None = line
        self.key = key


class Outbox:
    """The lines one connection holds, oldest first, and the newest of each coalescing key."""

    __slots__ = ("_latest", "_superseded", "items")

    def __init__(self) -> None:
        self.items: deque[_Outgoing] = deque()
        """What is held, oldest first.  Never replaced, only emptied and refilled: the
        session keeps a reference and tests it for emptiness on every reply, without a call."""
        self._latest: dict[tuple[str, str], _Outgoing] = {}
        self._superseded = 0

    def hold(self, line: bytes) -> None:
        """Keep a reply (or any line that must be sent as it is), after what is held."""
        self.items.append(_Outgoing(line))

    def hold_notification(self, line: bytes, key: tuple[str, str] | None) -> None:
        """Keep a notification; with a key, an older unsent one with that key is dropped."""
        item = _Outgoing(line, key)
        if key is not None:
            older = self._latest.get(key)
            if older is not None:
                older.line = None
                self._superseded += 1
            self._latest[key] = item
        items = self.items
        items.append(item)
        if self._superseded > COMPACT_AFTER and 2 * self._superseded > len(items):
            kept = [item for item in items if item.line is not None]
            items.clear()
            items.extend(kept)
            self._superseded = 0

    def next_line(self) -> bytes | None:
        """Take the oldest line still to be sent, or None when nothing is held."""
        items = self.items
        while items:
            item = items.popleft()
            if item.line is None:
                self._superseded -= 1
                continue
            if item.key is not None and self._latest.get(item.key) is item:
                del self._latest[item.key]
            return item.line
        self._superseded = 0
        return None

    def clear(self) -> None:
        """Forget everything held (the connection is gone)."""
        self.items.clear()
        self._latest.clear()
        self._superseded = 0
