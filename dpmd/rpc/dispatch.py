"""JSON-RPC 2.0 without I/O: one line of bytes in, a Deferred of the reply out.

The dispatcher knows the JSON-RPC 2.0 rules (request shape, ids, batches,
notifications, the standard error codes) and nothing of transports or of
the DPM.  Handlers come from a table of ``Method`` entries; each declares
its parameters so that binding by name or by position, and the ``-32602``
errors that name the offending parameter, are done here once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.python.failure import Failure

from dpmd.logs import get_logger
from dpmd.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
)

log = get_logger(__name__)

MAX_BATCH = 1000
"""Requests in one batch; a longer batch is refused as a whole (a bound on work per line)."""


@dataclass(frozen=True)
class Param:
    """A declared parameter: ``check`` returns the value to pass or raises ``ValueError``."""

    name: str
    check: Callable[[Any], Any]


@dataclass(frozen=True)
class Method:
    """One callable method; the handler gets the session first when ``takes_session``."""

    name: str
    handler: Callable[..., Any]
    params: tuple[Param, ...] = ()
    takes_session: bool = False


def json_type_name(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def string_param(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {json_type_name(value)}")
    return value


def encode(message: Any) -> bytes:
    """One JSON text on one line, UTF-8, compact."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _valid_id(request_id: Any) -> bool:
    # JSON-RPC 2.0 ids are strings, numbers or null; booleans are not numbers.
    return request_id is None or (
        isinstance(request_id, str | int | float) and not isinstance(request_id, bool)
    )


def _error_response(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}


class Dispatcher:
    """Turns request lines into reply lines using a method table.

    ``translate_error`` lets the API layer map its own exceptions (the DPM's
    ``DaqException``) to ``RpcError``; anything left over is an internal
    error with an opaque incident id, its traceback logged under that id.
    """

    def __init__(
        self,
        methods: Mapping[str, Method],
        translate_error: Callable[[BaseException], RpcError | None] = lambda error: None,
    ) -> None:
        self._methods = dict(methods)
        self._translate_error = translate_error

    def dispatch(self, line: bytes, session: Any = None) -> Deferred[bytes | None]:
        """Answer one line; the Deferred fires with the reply, or None when none is due."""
        try:
            message = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as error:
            reason = "not UTF-8" if isinstance(error, UnicodeDecodeError) else "not valid JSON"
            return succeed(
                encode(_error_response(None, RpcError(PARSE_ERROR, f"parse error: {reason}")))
            )
        if isinstance(message, list):
            return self._dispatch_batch(message, session)
        return self._dispatch_one(message, session).addCallback(
            lambda reply: None if reply is None else encode(reply)
        )

    def _dispatch_batch(self, batch: list[Any], session: Any) -> Deferred[bytes | None]:
        if not batch:
            return succeed(encode(_error_response(None, RpcError(INVALID_REQUEST, "empty batch"))))
        if len(batch) > MAX_BATCH:
            error = RpcError(INVALID_REQUEST, f"batch of {len(batch)} requests exceeds {MAX_BATCH}")
            return succeed(encode(_error_response(None, error)))

        def collect(replies: list[dict[str, Any] | None]) -> bytes | None:
            present = [reply for reply in replies if reply is not None]
            return encode(present) if present else None

        calls = [self._dispatch_one(request, session) for request in batch]
        return gatherResults(calls, consumeErrors=True).addCallback(collect)

    def _dispatch_one(self, request: Any, session: Any) -> Deferred[dict[str, Any] | None]:
        """Handle one request object; never fails, the result is the reply object or None."""
        if not isinstance(request, dict):
            error = RpcError(
                INVALID_REQUEST, f"a request must be an object, not {json_type_name(request)}"
            )
            return succeed(_error_response(None, error))
        is_notification = "id" not in request
        request_id = request.get("id")
        try:
            method, arguments = self._bind(request)
        except RpcError as error:
            if is_notification and error.code != INVALID_REQUEST:
                return succeed(None)
            return succeed(_error_response(request_id if _valid_id(request_id) else None, error))
        if is_notification:
            maybeDeferred(self._call, method, arguments, session).addErrback(
                self._log_notification_failure, method.name
            )
            return succeed(None)
        return (
            maybeDeferred(self._call, method, arguments, session)
            .addCallback(lambda result: {"jsonrpc": "2.0", "id": request_id, "result": result})
            .addErrback(
                lambda failure: _error_response(
                    request_id, self._to_rpc_error(failure, method.name)
                )
            )
        )

    def _bind(self, request: dict[str, Any]) -> tuple[Method, dict[str, Any]]:
        """Check the request's shape and bind its params; raise RpcError on any fault."""
        if request.get("jsonrpc") != "2.0":
            raise RpcError(INVALID_REQUEST, 'member "jsonrpc" must be exactly "2.0"')
        if "id" in request and not _valid_id(request["id"]):
            raise RpcError(INVALID_REQUEST, 'member "id" must be a string, a number or null')
        name = request.get("method")
        if not isinstance(name, str):
            raise RpcError(INVALID_REQUEST, 'member "method" must be a string')
        params = request.get("params", [])
        if not isinstance(params, list | dict):
            raise RpcError(INVALID_REQUEST, 'member "params" must be an array or an object')
        method = self._methods.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {name}")
        return method, _bind_params(method, params)

    def _call(self, method: Method, arguments: dict[str, Any], session: Any) -> Any:
        if method.takes_session:
            return method.handler(session, **arguments)
        return method.handler(**arguments)

    def _to_rpc_error(self, failure: Failure, method_name: str) -> RpcError:
        if isinstance(failure.value, RpcError):
            return failure.value
        translated = self._translate_error(failure.value)
        if translated is not None:
            return translated
        incident = uuid.uuid4().hex[:12]
        log.failure(
            "internal error in {method} (incident {incident})",
            failure,
            method=method_name,
            incident=incident,
        )
        return RpcError(
            INTERNAL_ERROR, f"internal error (incident {incident})", {"incident": incident}
        )

    def _log_notification_failure(self, failure: Failure, method_name: str) -> None:
        error = self._to_rpc_error(failure, method_name)
        log.info(
            "notification {method} failed: {message}", method=method_name, message=error.message
        )


def _bind_params(method: Method, params: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
    declared = method.params
    names = ", ".join(param.name for param in declared) or "none"
    if isinstance(params, list):
        if len(params) > len(declared):
            raise RpcError(
                INVALID_PARAMS,
                f"{method.name} takes {len(declared)} parameter(s) ({names}), {len(params)} given",
            )
        given = dict(zip((param.name for param in declared), params, strict=False))
    else:
        unknown = sorted(set(params) - {param.name for param in declared})
        if unknown:
            raise RpcError(
                INVALID_PARAMS,
                f"{method.name} has no parameter {unknown[0]!r} (parameters: {names})",
            )
        given = dict(params)
    arguments: dict[str, Any] = {}
    for param in declared:
        if param.name not in given:
            raise RpcError(INVALID_PARAMS, f"{method.name}: missing parameter {param.name!r}")
        try:
            arguments[param.name] = param.check(given[param.name])
        except ValueError as error:
            raise RpcError(
                INVALID_PARAMS, f"{method.name}: parameter {param.name!r} {error}"
            ) from None
    return arguments
