"""Bounded line framing for line-delimited JSON, shared by the server and the client.

Both ends of the protocol read the same way: lines end with ``\\n`` or
``\\r\\n``, blank lines carry nothing, and a line longer than the bound means
the peer cannot be trusted any more.  The buffer hands out one line at a
time, so the server can stop between lines when too many requests are in
flight.

Each received chunk is split once, where it arrives: complete lines wait in
a queue, and the unfinished end is kept as a list of chunks, so a long line
arriving in many small reads is neither rescanned nor copied until it is
complete, and a read holding hundreds of short requests costs one split.

The bound is on the line without its ending: a line of exactly the bound
whose ``\\r`` has arrived and whose ``\\n`` has not is not too long yet.
"""

from __future__ import annotations

from collections import deque

LINE_OVERHEAD = 48
"""Bytes a queued line costs beyond its text (the object holding it), for ``len``."""


class LineTooLong(Exception):
    """A line, complete or not, exceeds the buffer's bound."""


class LineBuffer:
    """The bytes received and not yet handed out as lines."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._complete: deque[bytes] = deque()
        self._partial: list[bytes] = []
        self._partial_bytes = 0
        self._held = 0

    def __len__(self) -> int:
        """Memory held for what was received and not yet handed out, in bytes."""
        return self._held

    def feed(self, data: bytes) -> None:
        pieces = data.split(b"\n")
        if len(pieces) == 1:
            if data:
                self._partial.append(data)
                self._partial_bytes += len(data)
                self._held += len(data)
            return
        self._held += len(data) + LINE_OVERHEAD * (len(pieces) - 1)
        tail = pieces.pop()
        if self._partial:
            self._partial.append(pieces[0])
            pieces[0] = b"".join(self._partial)
            self._partial = []
        self._complete.extend(pieces)
        self._partial_bytes = len(tail)
        if tail:
            self._partial.append(tail)

    def next_line(self) -> bytes | None:
        """The next non-blank line without its ending, or ``None`` until more data comes.

        Raises ``LineTooLong`` as soon as the bound is passed, without waiting
        for the end of the line.
        """
        complete = self._complete
        while complete:
            line = complete.popleft()
            self._held -= len(line) + LINE_OVERHEAD
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line_bytes:
                raise LineTooLong()
            if line and not line.isspace():
                return line
        held = self._partial_bytes
        if held > self.max_line_bytes and (
            held > self.max_line_bytes + 1 or not self._partial[-1].endswith(b"\r")
        ):
            raise LineTooLong()
        return None

    def take_rest(self) -> bytes | None:
        """What is left once the peer has stopped sending: its last line without a newline.

        ``None`` if nothing but blanks is left.  Call it once ``next_line``
        has returned ``None``.  Raises ``LineTooLong`` like ``next_line``.
        """
        rest = b"".join(self._partial)
        self.clear()
        if rest.endswith(b"\r"):
            rest = rest[:-1]
        if len(rest) > self.max_line_bytes:
            raise LineTooLong()
        return rest if rest and not rest.isspace() else None

    def clear(self) -> None:
        """Forget everything received, as when the stream is given up."""
        self._complete.clear()
        self._partial = []
        self._partial_bytes = 0
        self._held = 0
