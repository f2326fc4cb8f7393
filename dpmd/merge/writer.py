"""Write a planned product so that nobody ever sees half of it.

A new product (and a rewritten in-place target) is built in an unnamed file
(`O_TMPFILE`) in the output directory, synced, then given its final name by a
rename: a killed merge leaves nothing behind. An in-place target whose header
still fits is updated in place; a roll-back record (original size and header
blocks) saved beforehand lets the next run, or the failing one, restore it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from dpmd.durable import fsync_directory
from dpmd.spec.cards import BLOCK, header_bytes

from .errors import MergeError, OutputError, SourceError
from .fitsio import WRITE_ERRNOS, Pacer, copy_range, pwrite_all, sum_range
from .plan import Mode, Piece, Plan

ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass(frozen=True)
class Written:
    """What the writer made: the product's size and its primary header's records
    as written (DATASUM and CHECKSUM final)."""

    size: int
    records: tuple[str, ...]


def _output_error(exc: OSError, what: str) -> OutputError:
    return OutputError(f"{what}: {exc.strerror or exc}")


def _reserve(fd: int, offset: int, length: int) -> None:
    """Allocate the space up front so a full disk fails the merge before any copying."""
    if length <= 0 or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise _output_error(exc, f"cannot allocate {length} bytes for the product") from exc


class AtomicOutput:
    """A file that appears under its final name complete, or not at all."""

    def __init__(self, final: str, mode: int | None = None):
        self.final = final
        self.directory, self.name = os.path.split(final)
        self.mode = mode
        self.fd = -1
        self.temp_path: str | None = None

    def _temp_name(self) -> str:
        return os.path.join(self.directory, f".{self.name}.{os.getpid()}.dpmd-tmp")

    def __enter__(self) -> AtomicOutput:
        try:
            self.fd = self._open()
            if self.mode is not None:
                os.fchmod(self.fd, self.mode)
        except OSError as exc:
            raise _output_error(exc, f"cannot create a file in {self.directory}") from exc
        return self

    def _open(self) -> int:
        if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
            try:
                return os.open(self.directory, os.O_TMPFILE | os.O_RDWR, 0o666)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
        self.temp_path = self._temp_name()
        return os.open(self.temp_path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)

    def commit(self, before_sync: Callable[[], None] | None = None) -> None:
        """fsync, then give the file its final name (replacing any old file) durably.

        `before_sync` is called just before the fsync, which may take long.
        """
        try:
            if before_sync is not None:
                before_sync()
            os.fsync(self.fd)
            if self.temp_path is None:
                # linkat(AT_SYMLINK_FOLLOW) on the magic link names the unnamed file;
                # a dir_fd makes Python use linkat instead of link().
                directory = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    name = os.path.basename(self._temp_name())
                    os.link(
                        f"/proc/self/fd/{self.fd}", name, dst_dir_fd=directory, follow_symlinks=True
                    )
                finally:
                    os.close(directory)
                self.temp_path = self._temp_name()
            os.replace(self.temp_path, self.final)
            self.temp_path = None
            fsync_directory(self.directory)
        except OSError as exc:
            raise _output_error(exc, f"cannot write {self.final}") from exc

    def __exit__(self, *exc_info: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.temp_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.temp_path)


def _open_source(piece: Piece) -> int:
    try:
        return os.open(piece.path, os.O_RDONLY)
    except OSError as exc:
        raise SourceError(
            f"source {piece.source_name!r}: cannot read {piece.path}: {exc.strerror}"
        ) from exc


def _copy_piece(
    piece: Piece, dst: int, offset: int, progress: Callable[[int], None], pacer: Pacer
) -> int | None:
    """Copy one piece to `offset` of `dst`; returns its checksum if it is primary data."""
    src = _open_source(piece)
    what = f"source {piece.source_name!r} ({piece.path})"
    try:
        if piece.is_primary_data:
            return sum_range(src, piece.offset, piece.length, what, progress, dst, offset, pacer)
        copy_range(src, piece.offset, dst, offset, piece.length, what, progress, pacer)
        return None
    finally:
        os.close(src)


def _syncing(progress: ProgressFactory, size: int) -> Callable[[], None]:
    """Announce an fsync of `size` bytes (a `sync` progress line at 0), then the fsync."""
    return lambda: progress("sync", size)(0)


def write_product(plan: Plan, progress: ProgressFactory) -> Written:
    """Execute the plan; returns the product's size and DATASUM."""
    if plan.mode is Mode.IN_PLACE:
        return _update_in_place(plan, progress)
    mode = None
    if plan.mode is Mode.IN_PLACE_REWRITE:
        mode = os.stat(plan.output).st_mode & 0o7777
    advance = progress("write", plan.size)
    pacer = Pacer()
    with AtomicOutput(plan.output, mode) as out:
        _reserve(out.fd, 0, plan.size)
        records = plan.header.final_records(0)
        pwrite_all(out.fd, header_bytes(records), 0, plan.output)
        advance(plan.header.size)
        offset, datasum = plan.header.size, 0
        for piece in plan.pieces:
            summed = _copy_piece(piece, out.fd, offset, advance, pacer)
            datasum = datasum if summed is None else summed
            offset += piece.length
        if datasum:
            records = plan.header.final_records(datasum)
            pwrite_all(out.fd, header_bytes(records), 0, plan.output)
        out.commit(_syncing(progress, plan.size))
    return Written(plan.size, tuple(records))


def _update_in_place(plan: Plan, progress: ProgressFactory) -> Written:
    target, target_source = plan.target, plan.spec.target_source
    assert target is not None and target_source is not None
    primary = target.primary
    try:
        fd = os.open(target.path, os.O_RDWR)
    except OSError as exc:
        raise _output_error(exc, f"cannot open the in-place target {target.path}") from exc
    try:
        status = os.fstat(fd)
        if status.st_size != target.size:
            raise SourceError(f"in-place target {target.path} changed while the merge was planned")
        datasum = 0
        if primary.data_span:
            datasum = sum_range(
                fd,
                primary.data_offset,
                primary.data_span,
                f"in-place target {target.path}",
                progress("checksum", primary.data_span),
            )
        records = plan.header.final_records(datasum)
        header = header_bytes(records)
        if len(header) != primary.header_size:
            raise MergeError("internal error: in-place header does not match the header space")
        appended = [p for p in plan.pieces if p.source_name != target_source.source_name]
        total = sum(p.length for p in appended)
        advance = progress("write", total + len(header))
        rollback = Rollback(target.path)
        rollback.save(status, os.pread(fd, primary.header_size, 0), target.end)
        try:
            end = target.end
            _reserve(fd, end, total)
            pacer = Pacer()
            for piece in appended:
                _copy_piece(piece, fd, end, advance, pacer)
                end += piece.length
            os.ftruncate(fd, end)
            _syncing(progress, end)()
            os.fsync(fd)
            pwrite_all(fd, header, 0, target.path)
            os.fsync(fd)
            advance(len(header))
        except BaseException:
            rollback.restore(fd)
            raise
        rollback.discard()
        return Written(end, tuple(records))
    except OSError as exc:
        raise _output_error(exc, f"cannot update {target.path}") from exc
    finally:
        os.close(fd)


class Rollback:
    """Original size and header blocks of an in-place target, saved next to it.

    `end` is where the target's last HDU ends: extensions are appended there,
    over any zero padding that followed it, so a restore cuts the file back
    to `end` and then extends it with zeros to its original size.
    """

    def __init__(self, target_path: str):
        directory, name = os.path.split(os.path.abspath(target_path))
        self.directory = directory
        self.path = os.path.join(directory, f".{name}.dpmd-rollback")
        self.target_path = target_path

    def save(self, status: os.stat_result, header: bytes, end: int) -> None:
        meta = {
            "size": status.st_size,
            "end": end,
            "ino": status.st_ino,
            "dev": status.st_dev,
            "header": len(header),
        }
        with AtomicOutput(self.path) as out:
            pwrite_all(out.fd, json.dumps(meta).encode() + b"\n" + header, 0, self.path)
            out.commit()

    def load(self) -> tuple[dict[str, int], bytes] | None:
        try:
            with open(self.path, "rb") as stream:
                meta = json.loads(stream.readline())
                header = stream.read()
            meta.setdefault("end", meta["size"])  # records written before padding was known
            if (
                len(header) != meta["header"]
                or len(header) % BLOCK
                or not all(isinstance(meta[key], int) for key in ("size", "end", "ino", "dev"))
                or meta["end"] > meta["size"]
            ):
                raise ValueError("inconsistent")
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise MergeError(
                f"roll-back record {self.path} is damaged; check the target by "
                "hand, then remove the record"
            ) from None
        return meta, header

    def restore(self, fd: int) -> None:
        """Put back the original size and header, then forget the record."""
        loaded = self.load()
        if loaded is None:
            return
        meta, header = loaded
        status = os.fstat(fd)
        if (status.st_ino, status.st_dev) != (meta["ino"], meta["dev"]) or (
            status.st_size < meta["end"]
        ):
            raise MergeError(
                f"roll-back record {self.path} does not belong to "
                f"{self.target_path}; remove it after checking the target"
            )
        os.ftruncate(fd, meta["end"])
        os.ftruncate(fd, meta["size"])
        pwrite_all(fd, header, 0, self.target_path)
        os.fsync(fd)
        self.discard()

    def discard(self) -> None:
        os.unlink(self.path)
        fsync_directory(self.directory)

    def pending(self) -> bool:
        return os.path.exists(self.path)


def recover(target_path: str) -> bool:
    """Undo an interrupted in-place merge of `target_path`; True if one was undone."""
    rollback = Rollback(target_path)
    if not rollback.pending():
        return False
    try:
        fd = os.open(target_path, os.O_RDWR)
    except OSError as exc:
        raise _output_error(exc, f"cannot roll back {target_path}") from exc
    try:
        rollback.restore(fd)
    finally:
        os.close(fd)
    return True
