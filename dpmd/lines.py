"""Bounded line framing for line-delimited JSON, shared by the server and the client.

Both ends of the protocol read the same way: lines end with ``\\n`` or
``\\r\\n``, blank lines carry nothing, and a line longer than the bound means
the peer cannot be trusted any more.  The buffer hands out one line at a
time, so the server can stop between lines when too many requests are in
flight, and it resumes its scan where the last one ended, so a long line
arriving in many small reads is scanned once rather than once per read.
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

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_line(self) -> bytes | None:
        """The next non-blank line without its ending, or ``None`` until more data comes.

        Raises ``LineTooLong`` as soon as the bound is passed, without waiting
        for the end of the line.
        """
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(self._buffer)
                if len(self._buffer) > self.max_line_bytes:
                    raise LineTooLong()
                return None
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._scanned = 0
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line_bytes:
                raise LineTooLong()
            if line.strip():
                return line

    def clear(self) -> None:
        """Forget everything received, as when the stream is given up."""
        self._buffer.clear()
        self._scanned = 0
