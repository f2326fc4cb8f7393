"""FITS files as byte ranges: walk HDUs by their headers, copy and checksum ranges.

Only headers are parsed; data is never interpreted. Extensions are copied byte
for byte in large chunks (`copy_file_range` when the kernel has it, so the
bytes need not pass through this process), which keeps their own checksums
valid and the memory use flat whatever the file size.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import prod

from dpmd.spec.cards import BLOCK, RECORD, CardError, parse_card, string_value

from . import checksum
from .errors import OutputError, SourceError

log = logging.getLogger("dpmd.merge")

CHUNK = 8 * 1024 * 1024
#: Smallest copy step; a copy starts with FIRST_CHUNK and adapts (see Pacer).
SMALLEST_CHUNK = 64 * 1024
FIRST_CHUNK = 1024 * 1024
#: Seconds one copy step should take, so progress lines come several times a second.
STEP_SECONDS = 0.25
#: Errors that mean "the output cannot be written", whatever call raised them.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
)
_NO_KERNEL_COPY = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.ETXTBSY}
)
Progress = Callable[[int], None]


class FitsFormatError(ValueError):
    """The bytes do not form a FITS file this program can walk."""


@dataclass(frozen=True)
class Hdu:
    """Where one HDU lies in its file; `data_size` excludes the block padding."""

    index: int
    header_offset: int
    data_offset: int
    data_size: int
    xtension: str | None = None
    extname: str | None = None
    naxis: int = 0

    @property
    def header_size(self) -> int:
        return self.data_offset - self.header_offset

    @property
    def data_span(self) -> int:
        return -(-self.data_size // BLOCK) * BLOCK

    @property
    def end(self) -> int:
        return self.data_offset + self.data_span


@dataclass(frozen=True)
class FitsLayout:
    """A scanned FITS file: its primary header records and every HDU's byte range."""

    path: str
    size: int
    primary_records: tuple[str, ...]
    hdus: tuple[Hdu, ...]

    @property
    def primary(self) -> Hdu:
        return self.hdus[0]

    @property
    def extensions(self) -> tuple[Hdu, ...]:
        return self.hdus[1:]

    @property
    def end(self) -> int:
        return self.hdus[-1].end

    @property
    def extensions_range(self) -> tuple[int, int]:
        """(offset, length) of all extensions, which are contiguous."""
        return self.primary.end, self.end - self.primary.end


def keyword_value(records: Sequence[str], name: str) -> str | None:
    """Value text of the first `name` record; strings are returned decoded."""
    key = name.ljust(8) + "="
    for record in records:
        if record.startswith(key):
            try:
                value = parse_card(record).value
            except CardError as exc:
                raise FitsFormatError(f"{name}: {exc}") from None
            text = string_value(value)
            return value if text is None else text
    return None


def _int(records: list[str], name: str, default: int | None = None) -> int:
    text = keyword_value(records, name)
    if text is None:
        if default is None:
            raise FitsFormatError(f"missing {name}")
        return default
    try:
        return int(text)
    except ValueError:
        raise FitsFormatError(f"{name} = {text!r} is not an integer") from None


def read_header(fd: int, offset: int, file_size: int) -> tuple[list[str], int]:
    """Records up to (not including) END, and the header length in bytes."""
    records: list[str] = []
    position = offset
    while True:
        if position + BLOCK > file_size:
            raise FitsFormatError(f"header at byte {offset} has no END before the end of file")
        raw = os.pread(fd, BLOCK * 4, position)
        for block in range(0, len(raw) - len(raw) % BLOCK, BLOCK):
            try:
                text = raw[block : block + BLOCK].decode("ascii")
            except UnicodeDecodeError:
                raise FitsFormatError(f"header at byte {offset} is not ASCII") from None
            for start in range(0, BLOCK, RECORD):
                record = text[start : start + RECORD]
                if record[:8] == "END     ":
                    return records, position + block + BLOCK - offset
                records.append(record)
        position += len(raw) - len(raw) % BLOCK


def data_size(records: list[str], primary: bool) -> int:
    """Bytes of the data unit a header announces, block padding excluded."""
    bitpix = _int(records, "BITPIX")
    if bitpix not in (8, 16, 32, 64, -32, -64):
        raise FitsFormatError(f"invalid BITPIX {bitpix}")
    axes = [_int(records, f"NAXIS{n}") for n in range(1, _int(records, "NAXIS") + 1)]
    if any(axis < 0 for axis in axes):
        raise FitsFormatError("negative NAXISn")
    groups = keyword_value(records, "GROUPS") == "T"
    if primary and not groups:
        return abs(bitpix) // 8 * (prod(axes) if axes else 0)
    elements = prod(axes[1:]) if groups and axes else (prod(axes) if axes else 0)
    return abs(bitpix) // 8 * _int(records, "GCOUNT", 1) * (_int(records, "PCOUNT", 0) + elements)


def scan(path: str, tick: Callable[[], None] | None = None) -> FitsLayout:
    """Walk every HDU of a file by reading headers only; `tick` is called per HDU.

    Raises FitsFormatError for a file that is not FITS or is truncated, and
    OSError when it cannot be read.
    """
    with open(path, "rb") as stream:
        fd = stream.fileno()
        size = os.fstat(fd).st_size
        records, header_size = read_header(fd, 0, size)
        if (
            not records
            or not records[0].startswith("SIMPLE  =")
            or (keyword_value(records, "SIMPLE") != "T")
        ):
            raise FitsFormatError("does not start with SIMPLE = T")
        hdus = [Hdu(0, 0, header_size, data_size(records, True), naxis=_int(records, "NAXIS"))]
        primary = tuple(records)
        while hdus[-1].end < size:
            if tick is not None:
                tick()
            offset = hdus[-1].end
            if os.pread(fd, 9, offset) != b"XTENSION=":
                _check_padding(fd, offset, size, path)
                break
            ext, header_size = read_header(fd, offset, size)
            hdus.append(
                Hdu(
                    len(hdus),
                    offset,
                    offset + header_size,
                    data_size(ext, False),
                    keyword_value(ext, "XTENSION"),
                    keyword_value(ext, "EXTNAME"),
                )
            )
        if hdus[-1].end > size:
            raise FitsFormatError(
                f"truncated: HDU {len(hdus) - 1} ends at byte {hdus[-1].end}, file has {size}"
            )
    return FitsLayout(path, size, primary, tuple(hdus))


def _check_padding(fd: int, offset: int, size: int, path: str) -> None:
    """Bytes after the last HDU: zeros (some writers pad) are accepted and not copied.

    Anything else is refused: it may be an HDU this program cannot see, and
    dropping it silently would lose data.
    """
    position = offset
    while position < size:
        chunk = os.pread(fd, min(CHUNK, size - position), position)
        if not chunk or chunk.count(0) != len(chunk):
            raise FitsFormatError(
                f"{size - offset} bytes after the last HDU at byte {offset} are not a FITS HDU"
            )
        position += len(chunk)
    log.info(
        "%s: %d zero bytes after the last HDU at byte %d are padding; they are not copied",
        path,
        size - offset,
        offset,
    )


def _write_error(exc: OSError, what: str) -> OutputError:
    return OutputError(f"cannot write {what}: {os.strerror(exc.errno or 0)}")


def pwrite_all(fd: int, data: bytes | memoryview, offset: int, what: str) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.pwrite(fd, view, offset)
        except OSError as exc:
            raise _write_error(exc, what) from exc
        view, offset = view[written:], offset + written


def _read_into(fd: int, view: memoryview, offset: int, what: str) -> None:
    while view:
        try:
            count = os.preadv(fd, [view], offset)
        except OSError as exc:
            raise SourceError(f"cannot read {what}: {exc.strerror}") from exc
        if count == 0:
            raise SourceError(f"{what} is shorter than its headers say (changed while merging?)")
        view, offset = view[count:], offset + count


class Pacer:
    """Sizes copy steps by time as well as by bytes.

    Each step is reported as progress, so a step must not take long even on a
    slow disk or a slow network file system: the next step is sized to take
    about STEP_SECONDS at the rate the last one achieved (a power of two
    between SMALLEST_CHUNK and CHUNK). A fast copy soon uses whole CHUNKs.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.size = min(FIRST_CHUNK, CHUNK)
        self._started = clock()

    def start(self) -> int:
        """Begin a step; returns its size in bytes."""
        self._started = self._clock()
        return self.size

    def finished(self, count: int) -> None:
        """A step of `count` bytes is done: size the next one from its rate."""
        elapsed = self._clock() - self._started
        if elapsed * 2 < STEP_SECONDS and count >= self.size:
            self.size = min(CHUNK, self.size * 2)
        elif elapsed > STEP_SECONDS * 2:
            while self.size > SMALLEST_CHUNK and self.size * elapsed > STEP_SECONDS * count:
                self.size //= 2


def copy_range(
    src: int,
    src_offset: int,
    dst: int,
    dst_offset: int,
    length: int,
    what: str,
    progress: Progress,
    pacer: Pacer | None = None,
) -> None:
    """Copy bytes between files, in the kernel when possible, else by chunks."""
    done = 0
    kernel = hasattr(os, "copy_file_range")
    buffer = None
    pacer = pacer or Pacer()
    while done < length:
        count = min(pacer.start(), length - done)
        if kernel:
            try:
                copied = os.copy_file_range(src, dst, count, src_offset + done, dst_offset + done)
            except OSError as exc:
                if exc.errno in WRITE_ERRNOS:
                    raise _write_error(exc, "the product") from exc
                if exc.errno not in _NO_KERNEL_COPY:
                    raise SourceError(f"cannot copy {what}: {exc.strerror}") from exc
                kernel = False
                continue
            if copied == 0:
                raise SourceError(
                    f"{what} is shorter than its headers say (changed while merging?)"
                )
        else:
            buffer = buffer or memoryview(bytearray(CHUNK))
            _read_into(src, buffer[:count], src_offset + done, what)
            pwrite_all(dst, buffer[:count], dst_offset + done, "the product")
            copied = count
        _start_writeback(dst, dst_offset + done, copied)
        pacer.finished(copied)
        done += copied
        progress(copied)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a finished range to disk now, so the final fsync has little left.

    On Linux, POSIX_FADV_DONTNEED begins asynchronous writeback of dirty pages
    (and drops clean ones, which the product does not need in the cache). The
    copy and the disk then work in parallel instead of one after the other.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def sum_range(
    src: int,
    src_offset: int,
    length: int,
    what: str,
    progress: Progress,
    dst: int | None = None,
    dst_offset: int = 0,
    pacer: Pacer | None = None,
) -> int:
    """Checksum a range (the primary data), copying it to `dst` on the way if given.

    Steps are powers of two (multiples of 4), so every step but the last sums
    whole 32-bit words.
    """
    buffer = memoryview(bytearray(min(CHUNK, max(length, 4))))
    total, done = 0, 0
    pacer = pacer or Pacer()
    while done < length:
        view = buffer[: min(pacer.start(), length - done)]
        _read_into(src, view, src_offset + done, what)
        total = checksum.add(total, checksum.sum32(view))
        if dst is not None:
            pwrite_all(dst, view, dst_offset + done, "the product")
            _start_writeback(dst, dst_offset + done, len(view))
        pacer.finished(len(view))
        done += len(view)
        progress(len(view))
    return total
