"""Bounded line framing for line-delimited JSON, shared by the server and the client.

Both ends of the protocol read the same way: lines end with ``\\n`` or
``\\r\\n``, blank lines carry nothing, and a line longer than the bound means
the peer cannot be trusted any more.  The buffer hands out one line at a
time, so the server can stop between lines when too many requests are in
flight, and it resumes its scan where the last one ended, so a long line
arriving in many small reads is scanned once rather than once per read.

The bound is on the line without its ending: a line of exactly the bound
whose ``\\r`` has arrived and whose ``\\n`` has not is not too long yet.
"""

from __future__ import annotations


class LineTooLong(Exception):
    """A line, complete or not, exceeds the buffer's bound."""


class LineBuffer:
    """The bytes received and not yet handed out as lines."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._scanned = 0

    def __len__(self) -> int:
        """Bytes held: received and not yet handed out."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_line(self) -> bytes | None:
        """The next non-blank line without its ending, or ``None`` until more data comes.

        Raises ``LineTooLong`` as soon as the bound is passed, without waiting
        for the end of the line.
        """
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = held = len(buffer)
                if held > self.max_line_bytes and (
                    held > self.max_line_bytes + 1 or buffer[-1] != 0x0D
                ):
                    raise LineTooLong()
                return None
            stop = end - 1 if end and buffer[end - 1] == 0x0D else end
            if stop > self.max_line_bytes:
                raise LineTooLong()
            with memoryview(buffer) as view:
                line = bytes(view[:stop])
            del buffer[: end + 1]
            self._scanned = 0
            if line and not line.isspace():
                return line

    def take_rest(self) -> bytes | None:
        """What is left once the peer has stopped sending: its last line without a newline.

        ``None`` if nothing but blanks is left.  Raises ``LineTooLong`` like
        ``next_line``.
        """
        rest = bytes(self._buffer)
        self.clear()
        if rest.endswith(b"\r"):
            rest = rest[:-1]
        if len(rest) > self.max_line_bytes:
            raise LineTooLong()
        return rest if rest and not rest.isspace() else None

    def clear(self) -> None:
        """Forget everything received, as when the stream is given up."""
        self._buffer.clear()
        self._scanned = 0
