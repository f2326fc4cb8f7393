"""Client endpoint strings, read the way Twisted's ``clientFromString`` reads them.

Both connectors accept exactly the same strings: the Twisted connector
checks a string here and then hands it to ``clientFromString``; the asyncio
connector, which has no such parser, connects from the parsed form.  Three
kinds are accepted, with Twisted's spelling of every parameter (host, port and path by position):

* ``tcp:HOST:PORT[:timeout=SECONDS]``
* ``unix:PATH[:timeout=SECONDS]``
* ``tls:HOST:PORT[:trustRoots=DIR][:certificate=FILE[:privateKey=FILE]][:timeout=SECONDS]``

``trustRoots`` is a directory whose ``*.pem`` files are the certificate
authorities to trust (without it, the system's); ``certificate`` (and
``privateKey``, unless the certificate file holds the key too) is the
client's own certificate.  As in Twisted, ``\\`` escapes a ``:`` or ``=``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dpmd.client.errors import EndpointError

DEFAULT_ENDPOINT = "tcp:127.0.0.1:12083"
"""Where dpmd listens when its configuration names nothing else."""

USAGE = (
    "use tcp:HOST:PORT, unix:PATH or "
    "tls:HOST:PORT[:trustRoots=DIR][:certificate=FILE[:privateKey=FILE]]"
)

DEFAULT_TIMEOUT = 30
"""Seconds to wait for a connection, as Twisted's client endpoints do."""


@dataclass(frozen=True)
class TcpEndpoint:
    """``tcp:HOST:PORT``: a server over plain TCP."""

    host: str
    port: int
    timeout: int = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class UnixEndpoint:
    """``unix:PATH``: a server on a Unix socket of this host."""

    path: str
    timeout: int = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class TlsEndpoint:
    """``tls:HOST:PORT``: a server over TLS, with the roots to trust and the client's own
    certificate and key when the server asks for one."""

    host: str
    port: int
    trust_roots: str | None = None
    certificate: str | None = None
    private_key: str | None = None
    timeout: int = DEFAULT_TIMEOUT


Endpoint = TcpEndpoint | UnixEndpoint | TlsEndpoint

# For each kind: the positional fields, then the keyword fields (Twisted's names).
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "tcp": (("host", "port"), ("timeout",)),
    "unix": (("path",), ("timeout",)),
    "tls": (("host", "port"), ("timeout", "trustRoots", "certificate", "privateKey")),
}


def _split(description: str) -> list[tuple[str, str | None]]:
    """Split at unescaped ``:``; each field is ``(text, None)`` or ``(name, value)``."""
    fields: list[tuple[str, str | None]] = []
    name: str | None = None
    current: list[str] = []
    escaped = False
    for char in description:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append(
                (name, "".join(current)) if name is not None else ("".join(current), None)
            )
            name, current = None, []
        elif char == "=" and name is None:
            name, current = "".join(current), []
        else:
            current.append(char)
    fields.append((name, "".join(current)) if name is not None else ("".join(current), None))
    return fields


def _refuse(description: str, problem: str) -> EndpointError:
    return EndpointError(f"endpoint {description!r}: {problem}; {USAGE}")


def parse_endpoint(description: str) -> Endpoint:
    """The endpoint a string describes; ``EndpointError`` says what is wrong with it."""
    (kind, kind_value), *rest = _split(description)
    kind = kind.lower()
    if kind_value is not None or kind not in _FIELDS:
        raise _refuse(description, f"unknown kind {kind!r}")
    positional_names, keyword_names = _FIELDS[kind]
    values: dict[str, str] = {}
    position = 0
    for text, value in rest:
        if value is None:
            if position >= len(positional_names):
                raise _refuse(description, f"unexpected field {text!r}")
            values[positional_names[position]] = text
            position += 1
        elif text in keyword_names:
            values[text] = value
        else:
            raise _refuse(description, f"unknown parameter {text!r}")
    for name in positional_names:
        if not values.get(name):
            raise _refuse(description, f"missing {name}")
    timeout = _seconds(description, values.get("timeout", str(DEFAULT_TIMEOUT)))
    if kind == "unix":
        return UnixEndpoint(values["path"], timeout)
    port = _port(description, values["port"])
    if kind == "tcp":
        return TcpEndpoint(values["host"], port, timeout)
    if "privateKey" in values and "certificate" not in values:
        raise _refuse(description, "privateKey needs certificate")
    return TlsEndpoint(
        values["host"],
        port,
        values.get("trustRoots"),
        values.get("certificate"),
        values.get("privateKey"),
        timeout,
    )


def _port(description: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _refuse(description, f"port {text!r} is not a number from 1 to 65535")
    return int(text)


def _seconds(description: str, text: str) -> int:
    # Twisted reads timeouts with int(), so a fraction would work in one connector only.
    if not text.isdigit() or int(text) == 0:
        raise _refuse(description, f"timeout {text!r} is not a whole number of seconds above 0")
    return int(text)
