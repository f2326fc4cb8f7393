"""FITS checksums (DATASUM / CHECKSUM) computed while streaming.

The FITS checksum is the 32-bit ones'-complement sum of the bytes read as
big-endian unsigned integers. Sums of consecutive chunks add up, so a product
can be checksummed while it is copied, in constant memory. numpy is imported
only when a large buffer is summed: a new-file product never needs it.
"""

from __future__ import annotations

import struct

_MASK = 0xFFFFFFFF
_SMALL = 256 * 1024
#: Characters the ASCII encoding must avoid (punctuation between digits and letters).
_EXCLUDED = frozenset(range(0x3A, 0x41)) | frozenset(range(0x5B, 0x61))


def fold(value: int) -> int:
    """Fold carries back in (end-around carry) until the value fits 32 bits."""
    while value >> 32:
        value = (value & _MASK) + (value >> 32)
    return value


def add(first: int, second: int) -> int:
    """Ones'-complement addition of two 32-bit sums."""
    return fold(first + second)


def sum32(buffer: bytes | bytearray | memoryview) -> int:
    """Ones'-complement sum of a buffer whose length is a multiple of 4."""
    length = len(buffer)
    if length % 4:
        raise ValueError("checksummed length must be a multiple of 4 bytes")
    if length <= _SMALL:
        return fold(sum(struct.unpack(f">{length // 4}I", buffer)))
    import numpy  # deferred: 0.2 s of start-up that most merges do not need

    return fold(int(numpy.frombuffer(buffer, dtype=">u4").sum(dtype=numpy.uint64)))


def encode(value: int) -> str:
    """16-character ASCII encoding of the complement of a sum (FITS checksum convention).

    Each byte is spread over four characters starting at '0'; pairs are nudged
    (one up, one down, keeping their sum) until no character is punctuation;
    the result is rotated one place right.
    """
    value = ~value & _MASK
    columns = [0] * 16
    for index in range(4):
        byte = (value >> (24 - 8 * index)) & 0xFF
        quotient, remainder = divmod(byte, 4)
        chars = [quotient + 0x30] * 4
        chars[0] += remainder
        for pair in (0, 2):
            while chars[pair] in _EXCLUDED or chars[pair + 1] in _EXCLUDED:
                chars[pair] += 1
                chars[pair + 1] -= 1
        for position in range(4):
            columns[4 * position + index] = chars[position]
    return "".join(chr(c) for c in columns[15:] + columns[:15])
