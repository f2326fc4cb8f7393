"""Where a file is: parsing ``location`` and receiver hosts, and refusing hostile ones.

A ``location`` is ``[user@]host:/absolute/path`` for a file on another host
and anything else for a local file (an absolute path, or one relative to
``dataroot``), following rsync's rule: a colon before the first slash means
a host.  A host that names this machine (``localhost``, its host name or its
fully qualified name) is local.

Hosts, users and paths end up as arguments of ``rsync`` and ``ssh``; they
never pass through a local shell, but a value that starts with ``-`` could
still be read as an option, and control characters have no business in
either.  ``location_problem`` and ``host_problem`` say what is wrong so that
``QueueDaq`` can refuse the specification naming the source.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from functools import cache

from dpmd.spec import is_remote_location


@dataclass(frozen=True)
class RemoteFile:
    """A file on another host, as rsync and ssh address it."""

    host: str
    path: str
    user: str = ""

    @property
    def login(self) -> str:
        """``user@host`` or ``host``: the ssh destination."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def rsync_argument(self) -> str:
        return f"{self.login}:{self.path}"


@cache
def local_host_names() -> frozenset[str]:
    names = {"localhost", "localhost.localdomain", "127.0.0.1", "::1"}
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.lower())
    return frozenset(names)


def is_local_host(host: str) -> bool:
    return not host or host.lower() in local_host_names()


def split_location(location: str) -> RemoteFile | str:
    """A ``RemoteFile``, or the local path (a ``localhost:`` prefix removed)."""
    if not is_remote_location(location):
        return location
    login, _, path = location.partition(":")
    user, _, host = login.rpartition("@")
    if is_local_host(host):
        return path
    return RemoteFile(host=host, path=path, user=user)


def _text_problem(what: str, value: str) -> str | None:
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        return f"{what} contains control characters"
    if value.startswith("-"):
        return f"{what} {value!r} starts with '-' and could be read as an option"
    return None


def host_problem(host: str, user: str = "") -> str | None:
    """Why a host (and user) cannot be used with ssh, or None."""
    return _text_problem("host", host) or (user and _text_problem("user", user)) or (
        "host name contains a space" if " " in host else None
    )


def location_problem(location: str) -> str | None:
    """Why a source's ``location`` is unsafe or unusable, or None."""
    if "\x00" in location:
        return "location contains a NUL character"
    where = split_location(location)
    if isinstance(where, str):
        return None  # read by dpmd itself, never given to another program as an argument
    problem = host_problem(where.host, where.user)
    if problem:
        return problem
    if not where.path.startswith("/"):
        return f"remote path {where.path!r} is not absolute"
    return _text_problem("remote path", where.path)


def receiver_problem(host: str, path: str) -> str | None:
    """Why a receiver's host or path cannot be used, or None."""
    if host and not is_local_host(host):
        problem = host_problem(host)
        if problem:
            return problem
    if not path.startswith("/"):
        return f"path {path!r} is not absolute"
    return _text_problem("path", path)
