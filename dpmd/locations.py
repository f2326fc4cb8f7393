"""Where a file is: parsing ``location`` and receiver hosts, and refusing hostile ones.

A ``location`` is ``[user@]host:/absolute/path`` for a file on another host
and anything else for a local file (an absolute path, or one relative to
``dataroot``), following rsync's rule: a colon before the first slash means
a host.  An IPv6 address is written in brackets, as rsync wants it:
``[2001:db8::7]:/data/a.fits``.  A host that names this machine
(``localhost``, a loopback address, its host name or its fully qualified
name) is local.

Hosts, users and paths end up as arguments of ``rsync`` and ``ssh``; they
never pass through a local shell, but a value that starts with ``-`` could
still be read as an option, a ``/`` or ``:`` in a host makes rsync write to
a local path instead, and control characters have no business in either.
So a host must be a host name (letters, digits, ``-``, ``_`` and dots), an
IPv4 address or a bracketed IPv6 address, and nothing else.
``location_problem``, ``host_problem`` and ``receiver_problem`` say what is
wrong so that ``QueueDaq`` can refuse the specification naming the source.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

from dpmd.spec import is_remote_location

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,63}\$?")
_LOGIN = re.compile(r"(?:(?P<user>[^@]*)@)?(?P<host>\[[^\]]*\]|[^:\[\]]*):(?P<path>.*)", re.S)


@dataclass(frozen=True)
class RemoteFile:
    """A file on another host, as rsync and ssh address it (``host`` without brackets)."""

    host: str
    path: str
    user: str = ""

    @property
    def login(self) -> str:
        """``user@host`` or ``host``: the ssh destination."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def rsync_argument(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        login = f"{self.user}@{host}" if self.user else host
        return f"{login}:{self.path}"


@cache
def local_host_names() -> frozenset[str]:
    names = {"localhost", "localhost.localdomain"}
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.lower())
    return frozenset(names)


def bare_host(host: str) -> str:
    """The host without the brackets of an IPv6 address."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_local_host(host: str) -> bool:
    bare = bare_host(host).lower()
    if not bare or bare in local_host_names():
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def _parse_remote(location: str) -> tuple[str, str, str]:
    """``(user, host as written, path)`` of a remote location."""
    match = _LOGIN.fullmatch(location)
    if match is None:  # an unbalanced bracket: host_problem says what is wrong with it
        head, _, path = location.partition(":")
        user, _, host = head.rpartition("@")
        return user, host, path
    return match["user"] or "", match["host"], match["path"]


def split_location(location: str) -> RemoteFile | str:
    """A ``RemoteFile``, or the local path (a prefix naming this host removed)."""
    if not is_remote_location(location):
        return location
    user, host, path = _parse_remote(location)
    if is_local_host(host) and host_problem(host) is None:
        return path
    return RemoteFile(host=bare_host(host), path=path, user=user)


def _has_control_characters(value: str) -> bool:
    return any(ord(character) < 32 or ord(character) == 127 for character in value)


def _text_problem(what: str, value: str) -> str | None:
    if _has_control_characters(value):
        return f"{what} contains control characters"
    if value.startswith("-"):
        return f"{what} {value!r} starts with '-' and could be read as an option"
    return None


def _ipv6_problem(host: str, inner: str) -> str | None:
    address, _, zone = inner.partition("%")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return f"host {host!r} is not a valid IPv6 address"
    if "%" in inner and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", zone):
        return f"host {host!r} has an invalid zone after '%'"
    return None


def host_problem(host: str, user: str = "") -> str | None:
    """Why a host (and user) cannot be given to ssh and rsync, or None.

    IPv6 addresses must be bracketed: a bare one is refused with the
    bracketed form in the message, since rsync would read its first colon
    as the end of the host.
    """
    if user:
        problem = _text_problem("user", user)
        if problem:
            return problem
        if not _USER.fullmatch(user):
            return f"user {user!r} is not a user name (letters, digits, '.', '_', '-')"
    problem = _text_problem("host", host)
    if problem:
        return problem
    if not host:
        return "host is empty"
    if " " in host:
        return f"host {host!r} contains a space"
    if "/" in host:
        return f"host {host!r} contains '/'"
    if host.startswith("["):
        if not host.endswith("]"):
            return f"host {host!r} has an unclosed '['"
        return _ipv6_problem(host, host[1:-1])
    if ":" in host:
        if _ipv6_problem(host, host) is None:
            return f"an IPv6 address must be written in brackets: [{host}]"
        return f"host {host!r} contains ':' (only an IPv6 address in brackets may)"
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"host {host!r} is not a valid IPv4 address"
        return None
    if len(host) > 253 or not _HOST_NAME.fullmatch(host):
        return (
            f"host {host!r} is not a host name (letters, digits, '-', '_' and dots), "
            "an IPv4 address or an IPv6 address in brackets"
        )
    return None


def _path_problem(path: str) -> str | None:
    if not path.startswith("/"):
        return f"path {path!r} is not absolute"
    if ".." in PurePosixPath(path).parts:
        return f"path {path!r} has a '..' segment"
    return _text_problem("path", path)


def location_problem(location: str) -> str | None:
    """Why a source's ``location`` is unsafe or unusable, or None."""
    if "\x00" in location:
        return "location contains a NUL character"
    if not is_remote_location(location):
        return None  # read by dpmd itself, never given to another program as an argument
    user, host, path = _parse_remote(location)
    problem = host_problem(host, user)
    if problem:
        return problem
    if is_local_host(host):
        return None
    path_problem = _path_problem(path)
    return f"remote {path_problem}" if path_problem else None


def receiver_problem(host: str, path: str) -> str | None:
    """Why a receiver's host or path cannot be used, or None (confinement aside)."""
    if host and not (is_local_host(host) and host_problem(host) is None):
        problem = host_problem(host)
        if problem:
            return problem
    return _path_problem(path)


def is_within(path: Path, root: Path) -> bool:
    """``path`` is ``root`` or below it, component by component (``/ab`` is not in ``/a``)."""
    return path == root or root in path.parents


def confinement_problem(path: str, allowed: Iterable[Path], workspace: Path) -> str | None:
    """Why a local receiver's directory is outside what an operator allowed, or None.

    The check is on the path as written (it has no ``..``, see
    ``receiver_problem``); ``resolved_confinement_problem`` also follows
    symbolic links, for the moment of the release.
    """
    directory = Path(os.path.normpath(path))
    if is_within(directory, workspace):
        return f"path {path!r} is inside the workspace {workspace}"
    roots = tuple(allowed)
    if any(is_within(directory, root) for root in roots):
        return None
    names = ", ".join(str(root) for root in roots)
    return f"path {path!r} is not under a directory receivers may use (release.allowed: {names})"


def resolved_confinement_problem(
    path: str, allowed: Iterable[Path], workspace: Path
) -> str | None:
    """``confinement_problem`` after resolving symbolic links on both sides (blocking).

    A directory under an allowed root may be a link to somewhere else; the
    release checks this just before it writes.
    """
    roots = [Path(os.path.realpath(root)) for root in allowed]
    return confinement_problem(os.path.realpath(path), roots, Path(os.path.realpath(workspace)))
