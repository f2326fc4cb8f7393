"""Who may connect and what they may call.

dpmd serves the observation coordinator: whoever can call ``QueueDaq``,
``AbortDaq`` or ``/dpm/Exit`` controls the data products.  Three kinds of
listener:

* plain ``tcp:`` on loopback, and ``ssl:`` — clients are not identified;
  every connection may call everything (the trusted default: only local
  users reach loopback);
* ``unix:`` — likewise, so the socket is created mode ``0600`` (only dpmd's
  own user may connect) unless the endpoint string says ``mode=`` itself;
* ``mtls:`` (``dpmd.mtls``) — every client proves an identity with a
  certificate; ``access.control`` lists identities allowed everything,
  ``access.read`` those allowed to read and subscribe, and anyone else is
  disconnected as soon as the handshake completes.

A session carries a ``role``; the dispatcher asks ``may_call`` before any
handler runs, so the rule lives here and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from zope.interface import Interface

READ_METHODS = frozenset({"/dpm/QueryStorageStatus", "Subscribe", "Unsubscribe"})
"""What a reader may call besides every ``Get*`` command."""


class Role(Enum):
    """What a client identity may do; a listener that authenticates gives each one role."""

    CONTROL = "control"
    """Every method."""
    READ = "read"
    """``Get*`` commands, ``QueryStorageStatus``, ``Subscribe`` and ``Unsubscribe``."""


class IClientIdentities(Interface):
    """A transport whose client proved who it is (``mtls:``): sessions on it get a role."""

    def client_identities() -> tuple[str, ...]:  # type: ignore[misc]
        """The identities of the client's verified certificate, once the handshake is done."""


def may_call(role: Role | None, method: str) -> bool:
    """Whether a session of ``role`` may call ``method``; no role (not yet known) may not."""
    if role is Role.CONTROL:
        return True
    if role is Role.READ:
        return method in READ_METHODS or method.rpartition("/")[2].startswith("Get")
    return False


@dataclass(frozen=True)
class AccessPolicy:
    """The identities of each role, as configured (``access.control``, ``access.read``)."""

    control: frozenset[str] = frozenset()
    read: frozenset[str] = frozenset()

    @classmethod
    def of(cls, control: Iterable[str] = (), read: Iterable[str] = ()) -> AccessPolicy:
        return cls(
            frozenset(name.lower() for name in control), frozenset(name.lower() for name in read)
        )

    def role_of(self, identities: Iterable[str]) -> tuple[Role, str] | None:
        """The strongest role any of a client's identities has, and that identity; or None."""
        names = [name.lower() for name in identities]
        for role, members in ((Role.CONTROL, self.control), (Role.READ, self.read)):
            for name in names:
                if name in members:
                    return role, name
        return None


_UNESCAPED_COLON = re.compile(r"(?<!\\):")


def private_unix_socket(description: str) -> str:
    """A ``unix:`` endpoint string with ``mode=600`` unless it names a mode itself.

    Twisted creates UNIX sockets mode 0666 by default: any local user could
    connect and call ``/dpm/Exit``.  Other endpoint strings are returned as
    they are.
    """
    if not description.startswith("unix:"):
        return description
    arguments = _UNESCAPED_COLON.split(description)[2:]
    if any(argument.startswith("mode=") for argument in arguments):
        return description
    return f"{description}:mode=600"
