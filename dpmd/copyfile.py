"""``python -m dpmd.copyfile SOURCE TARGET``: copy a file so that TARGET is never partial.

The copy goes to a hidden temporary name beside TARGET, is fsync'd, then
renamed to TARGET and the directory fsync'd: a reader of TARGET's directory
(an archive's ingestion) sees nothing, then the whole file.  Progress is
printed as JSON lines; the exit status is 0 on success, 1 on failure with
the reason on stderr.  It runs as a child process so that the server never
copies large files itself.

A receiver's directory may be writable by others (an ingestion account, a
group), so nothing found in it is trusted:

* the temporary is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a file or
  a symbolic link planted under its name makes the copy fail, it is never
  opened, followed or written through;
* a stale temporary is removed first only when it is ours: a regular file
  (not a link), owned by this user, with no other name (one link), as an
  interrupted copy leaves it.  Anything else under that name is refused and
  left in place for the operator to look at;
* a final name that is a symbolic link (or a directory) is refused; the
  rename never writes through it anyway, but a link there means someone
  expects the product elsewhere;
* every step is relative to one open descriptor of the directory, so the
  directory's path cannot be redirected between the checks and the rename;
* on failure only the temporary this copy created is removed, never a file
  someone else put under its name.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path

CHUNK = 64 * 1024 * 1024
PROGRESS_EVERY = 256 * 1024 * 1024

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeTarget(OSError):
    """Something under the target's or the temporary's name is not ours to touch."""


def temporary_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.dpmd-part")


def _entry(directory_fd: int, name: str) -> os.stat_result | None:
    """``lstat`` of a directory entry (never following a link), or None if absent."""
    try:
        return os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _is_our_leftover(entry: os.stat_result) -> bool:
    return stat.S_ISREG(entry.st_mode) and entry.st_uid == os.geteuid() and entry.st_nlink == 1


def _check_final_name(directory_fd: int, target: Path) -> None:
    entry = _entry(directory_fd, target.name)
    if entry is None or stat.S_ISREG(entry.st_mode):
        return
    if stat.S_ISLNK(entry.st_mode):
        what = "a symbolic link"
    elif stat.S_ISDIR(entry.st_mode):
        what = "a directory"
    else:
        what = "not a regular file"
    raise UnsafeTarget(errno.EEXIST, f"{target} is {what}; refusing to replace it")


def _create_temporary(directory_fd: int, temporary: Path) -> int:
    """Create the temporary exclusively, first removing a leftover of an earlier copy."""
    try:
        return os.open(temporary.name, _CREATE, 0o644, dir_fd=directory_fd)
    except FileExistsError:
        pass
    entry = _entry(directory_fd, temporary.name)
    if entry is not None:
        if not _is_our_leftover(entry):
            kind = "a symbolic link" if stat.S_ISLNK(entry.st_mode) else "a file not ours"
            raise UnsafeTarget(
                errno.EEXIST, f"{temporary} is {kind}; refusing to use or remove it"
            )
        os.unlink(temporary.name, dir_fd=directory_fd)
    # A second refusal means someone is racing us for the name: give up.
    return os.open(temporary.name, _CREATE, 0o644, dir_fd=directory_fd)


def _copy_data(reader_fd: int, writer_fd: int, size: int) -> int:
    done = 0
    reported = 0
    while done < size:
        try:
            sent = os.copy_file_range(reader_fd, writer_fd, CHUNK)
        except OSError:
            sent = os.sendfile(writer_fd, reader_fd, None, CHUNK)
        if sent == 0:
            break
        done += sent
        if done - reported >= PROGRESS_EVERY:
            reported = done
            print(json.dumps({"type": "progress", "done": done, "total": size}), flush=True)
    return done


def copy_durably(source: Path, target: Path) -> int:
    temporary = temporary_name(target)
    directory_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _check_final_name(directory_fd, target)
        with open(source, "rb") as reader:
            size = os.fstat(reader.fileno()).st_size
            writer_fd = _create_temporary(directory_fd, temporary)
            created = os.fstat(writer_fd)
            try:
                try:
                    done = _copy_data(reader.fileno(), writer_fd, size)
                    if done != size:
                        raise OSError(errno.EIO, f"{source} changed size during the copy")
                    os.fsync(writer_fd)
                finally:
                    os.close(writer_fd)
                _check_final_name(directory_fd, target)
                os.replace(
                    temporary.name, target.name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd
                )
            except BaseException:
                _remove_if_same(directory_fd, temporary.name, created)
                raise
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
    print(json.dumps({"type": "progress", "done": done, "total": size}), flush=True)
    return done


def _remove_if_same(directory_fd: int, name: str, created: os.stat_result) -> None:
    """Remove the temporary this copy created, and nothing that has taken its name since."""
    entry = _entry(directory_fd, name)
    if entry is not None and (entry.st_dev, entry.st_ino) == (created.st_dev, created.st_ino):
        os.unlink(name, dir_fd=directory_fd)


def remove_stale_temporary(target: Path) -> bool:
    """Remove a temporary an interrupted copy to ``target`` left, if it is ours (blocking).

    Returns whether one was removed; anything under the name that is not a
    leftover of ours (a link, another user's file) is left alone.
    """
    temporary = temporary_name(target)
    try:
        entry = os.stat(temporary, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not _is_our_leftover(entry):
        return False
    temporary.unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 2:
        print("usage: python -m dpmd.copyfile SOURCE TARGET", file=sys.stderr)
        return 2
    source, target = Path(arguments[0]), Path(arguments[1])
    try:
        copy_durably(source, target)
    except OSError as error:
        print(f"cannot copy {source} to {target}: {error.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
