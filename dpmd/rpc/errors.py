"""JSON-RPC 2.0 errors: the codes, the exception that carries one, its reply line,
and what any other exception from a handler becomes on the wire.

The dispatcher and the framing both answer with ``error_line``; the
dispatcher asks an ``ErrorMapping`` what a handler's exception means.  This
room knows JSON-RPC's error shape and the log, nothing of lines or the DPM:
the API layer plugs its own refusals in as ``translate``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from twisted.python.failure import Failure

from dpmd.encoding import encode, scrub
from dpmd.logs import get_logger

log = get_logger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
DAQ_EXCEPTION = -32000
NOT_AUTHORISED = -32001


class RpcError(Exception):
    """An error response: raising it from a handler answers with this code and message."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def error_line(request_id: Any, error: RpcError) -> bytes:
    """The error reply to ``request_id``: always encodable, even with a client's bad text in it."""
    message = {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}
    try:
        return encode(message)
    except (ValueError, TypeError):  # text from the client in the message or data
        return encode(scrub(message))


def new_incident() -> str:
    """An opaque id for an unexpected error: the client gets it, the log has the details."""
    return uuid.uuid4().hex[:12]


class ErrorMapping:
    """What an exception from a handler becomes on the wire.

    An ``RpcError`` is itself; ``translate`` (the API's: the DPM's
    ``DaqException``) may name another for the exceptions it knows; anything
    left over is an internal error with an opaque incident id, its traceback
    logged under that id.  It holds nothing but ``translate`` and calls only
    the log.
    """

    def __init__(self, translate: Callable[[BaseException], RpcError | None]) -> None:
        self._translate = translate

    def known(self, error: BaseException) -> RpcError | None:
        """The ``RpcError`` that ``error`` stands for, or None for an unexpected one."""
        if isinstance(error, RpcError):
            return error
        return self._translate(error)

    def outcome(self, error: BaseException) -> str:
        """The error code ``error`` is answered with, as text (what observers count)."""
        known = self.known(error)
        return str(known.code if known is not None else INTERNAL_ERROR)

    def of_exception(self, error: Exception, method_name: str) -> RpcError:
        """The RpcError for an exception a handler raised; call only inside ``except``."""
        known = self.known(error)
        return known if known is not None else self.internal(Failure(), method_name)

    def of_failure(self, failure: Failure, method_name: str) -> RpcError:
        """The RpcError for the failure a handler's Deferred fired with."""
        known = self.known(failure.value)
        return known if known is not None else self.internal(failure, method_name)

    def internal(self, failure: Failure, method_name: str) -> RpcError:
        incident = new_incident()
        log.failure(
            "internal error in {method} (incident {incident})",
            failure,
            method=method_name,
            incident=incident,
        )
        return RpcError(
            INTERNAL_ERROR, f"internal error (incident {incident})", {"incident": incident}
        )
