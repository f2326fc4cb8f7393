"""The exceptions a client call can end with.

A caller mostly needs to tell four things apart: the DPM refused the command
(``DaqError``, the ICD's ``DaqException``), the server reported some other
JSON-RPC error (``RpcError``), the connection is gone or never came up
(``ConnectionLost``, ``ConnectFailed``), or the server said something this
client cannot understand (``ProtocolError``).
"""

from __future__ import annotations

from typing import Any

from dpmd import model


class RpcError(Exception):
    """A JSON-RPC error response other than ``DaqException``: ``code``, ``message``, ``data``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (JSON-RPC error {code})")
        self.code = code
        self.message = message
        self.data = data


class DaqError(model.DaqError):
    """The DPM refused the command (error ``-32000``, ``DaqException``).

    It subclasses the server's own ``DaqError`` so code that embeds both can
    catch one type; ``id`` is the DAQ the command was about, or ``""``.
    """

    @property
    def id(self) -> str:
        return self.daq_id


class ProtocolError(Exception):
    """The server sent something that is not a valid answer to this client.

    After one of these the connection's framing cannot be trusted, so the
    connection is dropped and every call waiting on it fails with this error.
    """


class EndpointError(ValueError):
    """An endpoint string that cannot be used; the text says what is accepted."""


class ConnectFailed(ConnectionError):
    """No connection could be made to ``endpoint``; ``reason`` says why."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"cannot connect to {endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


class ConnectionLost(ConnectionError):
    """The connection to ``endpoint`` ended before the call was answered."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"connection to {endpoint} lost: {reason}")
        self.endpoint = endpoint
        self.reason = reason
