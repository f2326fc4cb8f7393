"""Tell systemd how the service is doing: the ``sd_notify`` protocol, without libsystemd.

A unit with ``Type=notify`` (``etc/dpmd.service``) starts dpmd with
``$NOTIFY_SOCKET`` naming a datagram socket; systemd counts the service as
started only when ``READY=1`` arrives there, so ``systemctl start`` returns
once dpmd really serves (and reports a start-up failure as one), and it
shows ``STATUS=`` lines in ``systemctl status``.  ``STOPPING=1`` says the
stop is dpmd's own doing (``/dpm/Exit``, a signal) rather than a crash.

The protocol is one datagram of ``KEY=VALUE`` lines to an ``AF_UNIX``
socket: a path, or an abstract name written with a leading ``@``.  Without
``$NOTIFY_SOCKET`` (not started by systemd) every call does nothing.  The
socket is non-blocking and a send that fails is logged, never raised: the
server must not stop serving because its supervisor is not listening.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from dpmd.logs import get_logger

log = get_logger(__name__)


def socket_address(value: str) -> str | None:
    """The ``AF_UNIX`` address ``$NOTIFY_SOCKET`` names, or ``None`` when it names none.

    ``@name`` is the abstract socket ``\\0name``; a path must be absolute.
    Other forms (systemd's ``vsock:``) are not for a server on this host.
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


class SystemdNotifier:
    """Sends ``sd_notify`` messages to the socket of ``$NOTIFY_SOCKET``, if any."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        value = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
        self.address = socket_address(value) if value else None
        if value and self.address is None:
            log.warn("ignoring NOTIFY_SOCKET {value!r}: not a UNIX socket address", value=value)

    @property
    def enabled(self) -> bool:
        """Whether a supervisor listens (``$NOTIFY_SOCKET`` is set and usable)."""
        return self.address is not None

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: dpmd serves; once, after every listener is up."""
        return self.notify(READY="1", STATUS=status)

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: dpmd is stopping on purpose; at the start of the shutdown."""
        return self.notify(STOPPING="1", STATUS=status)

    def status(self, text: str) -> bool:
        """``STATUS=…``: one line for ``systemctl status``."""
        return self.notify(STATUS=text)

    def notify(self, **fields: str | None) -> bool:
        """Send the fields that are not ``None`` in one datagram; whether it was sent."""
        if self.address is None:
            return False
        lines = [f"{key}={_one_line(value)}" for key, value in fields.items() if value is not None]
        message = "\n".join(lines).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(message, self.address)
        except OSError as error:
            log.warn(
                "cannot notify systemd at {address}: {reason}",
                address=self.address.replace("\0", "@"),
                reason=error.strerror or str(error),
            )
            return False
        return True


def _one_line(value: str) -> str:
    """A value cannot hold a newline: it would start another field."""
    return " ".join(value.splitlines())
