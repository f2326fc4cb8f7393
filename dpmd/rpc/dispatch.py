"""JSON-RPC 2.0 without I/O: one line of bytes in, the reply line out.

The dispatcher knows the JSON-RPC 2.0 rules (request shape, ids, batches,
notifications, the reply lines) and nothing of transports or of the DPM.
Handlers come from a table of ``Method`` entries, whose params are bound by
``dpmd.rpc.methods``; what a handler's exception is answered with is
``dpmd.rpc.errors``'s to say.  It calls those two, the encoder and
``dpmd.access``, and is called by the framing (``dpmd.rpc.protocol``).

A handler may return a plain value, return a ``Deferred``, or raise.  A
plain value is answered at once, without a Deferred anywhere on the way
(``answer`` returns bytes), because most calls are status queries that the
server can answer from memory and the wire should cost no more than the
JSON itself.  Every request is answered, whatever it holds: values that
could not be sent back (``1e400``, lone surrogates) are refused up front
naming where they are, and a result that cannot be encoded still gets an
error reply, so a client's slot is never lost.

Who may call what is decided here too, from the session's ``role`` (see
``dpmd.access``), so that no handler needs to know about identities.

An optional observer (the metrics) hears of every request: its method, its
outcome (``"ok"`` or the error code) and how long its handler took on the
server's clock, until its Deferred fired.  Without one, the table's handlers
are called as they are and nothing else is done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from dpmd.access import Role, may_call
from dpmd.encoding import ParseError, PreEncoded, decode, encode, quote, unrepresentable
from dpmd.logs import get_logger
from dpmd.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NOT_AUTHORISED,
    PARSE_ERROR,
    ErrorMapping,
    RpcError,
    error_line,
    new_incident,
)
from dpmd.rpc.methods import Method, bind_params, json_type_name

log = get_logger(__name__)

_CONTROL = Role.CONTROL

MAX_BATCH = 1000
"""Requests in one batch; a longer batch is refused as a whole (a bound on work per line)."""

Reply = bytes | None
"""An encoded reply line (without its newline), or None when no reply is due."""

Observe = Callable[[str | None, str, float], None]
"""``observe(method, outcome, seconds)``: ``method`` is None for a request naming no
method of the table; ``outcome`` is ``"ok"`` or the error code as text (``"-32000"``).
It must be quick and must not raise."""

OK = "ok"


def _id_problem(request_id: Any, surrogates: bool) -> str | None:
    """Why an ``id`` cannot be echoed, or None; JSON-RPC ids are strings, numbers or null."""
    kind = type(request_id)
    if request_id is None or kind is int or (kind is str and not surrogates):
        return None
    if kind is str or kind is float:
        return unrepresentable(request_id, 'member "id"', surrogates)
    return 'member "id" must be a string, a number or null'


class Dispatcher:
    """Turns request lines into reply lines using a method table.

    ``translate_error`` lets the API layer map its own exceptions (the DPM's
    ``DaqException``) to ``RpcError`` (see ``ErrorMapping``); anything left
    over is an internal error with an opaque incident id.

    ``observe`` (with the ``clock`` that times the handlers) hears of every
    request; a request refused before any handler ran counts 0 seconds.
    """

    def __init__(
        self,
        methods: Mapping[str, Method],
        translate_error: Callable[[BaseException], RpcError | None] = lambda error: None,
        observe: Observe | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self._errors = ErrorMapping(translate_error)
        self._observe = observe
        if observe is not None:
            if clock is None:
                raise ValueError("an observer needs the clock that times the requests")
            methods = {name: self._timed(method, observe, clock)
                       for name, method in methods.items()}  # fmt: skip
        self._methods = dict(methods)

    def _timed(self, method: Method, observe: Observe, clock: IReactorTime) -> Method:
        """The method with a handler that tells ``observe`` its outcome and duration."""
        handler, name, outcome_of = method.handler, method.name, self._errors.outcome

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock.seconds()
            try:
                result = handler(*args, **kwargs)
            except Exception as error:
                observe(name, outcome_of(error), clock.seconds() - started)
                raise
            if _deferred(result):

                def fired(outcome: Any) -> Any:
                    code = outcome_of(outcome.value) if isinstance(outcome, Failure) else OK
                    observe(name, code, clock.seconds() - started)
                    return outcome

                return result.addBoth(fired)
            observe(name, OK, clock.seconds() - started)
            return result

        return replace(method, handler=timed)

    def _refused(self, method: Any, code: int) -> None:
        """Tell the observer of a request answered with an error before any handler ran."""
        if self._observe is not None:
            known = method if type(method) is str and method in self._methods else None
            self._observe(known, str(code), 0.0)

    def dispatch(self, line: bytes, session: Any = None) -> Deferred[Reply]:
        """``answer`` as a Deferred, for callers that want one shape."""
        reply = self.answer(line, session)
        return reply if isinstance(reply, Deferred) else succeed(reply)

    def answer(self, line: bytes, session: Any = None) -> Reply | Deferred[Reply]:
        """The reply to one line: bytes (or None) at once, or a Deferred of them.

        Never raises and the Deferred never fails: every request is answered.
        """
        try:
            message, surrogates = decode(line)
        except ParseError as error:
            self._refused(None, PARSE_ERROR)
            return error_line(None, RpcError(PARSE_ERROR, f"parse error: {error}"))
        if type(message) is list:
            return self._answer_batch(message, session, surrogates)
        return self._answer_one(message, session, surrogates)

    def _answer_batch(
        self, batch: list[Any], session: Any, surrogates: bool
    ) -> Reply | Deferred[Reply]:
        if not batch:
            self._refused(None, INVALID_REQUEST)
            return error_line(None, RpcError(INVALID_REQUEST, "empty batch"))
        if len(batch) > MAX_BATCH:
            self._refused(None, INVALID_REQUEST)
            error = RpcError(INVALID_REQUEST, f"batch of {len(batch)} requests exceeds {MAX_BATCH}")
            return error_line(None, error)
        replies = [self._answer_one(request, session, surrogates) for request in batch]

        def join(lines: Sequence[Reply]) -> Reply:
            present = [line for line in lines if line is not None]
            return b"[" + b",".join(present) + b"]" if present else None

        if not any(isinstance(reply, Deferred) for reply in replies):
            return join(replies)  # type: ignore[arg-type]
        waiting = [reply if isinstance(reply, Deferred) else succeed(reply) for reply in replies]
        return gatherResults(waiting, consumeErrors=True).addCallback(join)

    def _answer_one(self, request: Any, session: Any, surrogates: bool) -> Reply | Deferred[Reply]:
        """Handle one request object; the reply line, None, or a Deferred that never fails."""
        if type(request) is not dict:
            self._refused(None, INVALID_REQUEST)
            error = RpcError(
                INVALID_REQUEST, f"a request must be an object, not {json_type_name(request)}"
            )
            return error_line(None, error)
        is_notification = "id" not in request
        request_id = request.get("id")
        problem = _id_problem(request_id, surrogates)
        if problem is not None:
            self._refused(request.get("method"), INVALID_REQUEST)
            return error_line(None, RpcError(INVALID_REQUEST, problem))
        try:
            method, arguments = self._bind(request, session, surrogates)
        except RpcError as error:
            self._refused(request.get("method"), error.code)
            if is_notification and error.code != INVALID_REQUEST:
                if error.code == NOT_AUTHORISED:
                    log.warn("notification refused: {message}", message=error.message)
                return None
            return error_line(request_id, error)
        if is_notification:
            self._notify(method, arguments, session)
            return None
        try:
            if method.takes_session:
                result = method.handler(session, **arguments)
            else:
                result = method.handler(**arguments)
        except Exception as error:
            return error_line(request_id, self._errors.of_exception(error, method.name))
        if _deferred(result):
            return result.addCallbacks(
                self._result_line,
                self._failure_line,
                callbackArgs=(request_id, method.name),
                errbackArgs=(request_id, method.name),
            )
        return self._result_line(result, request_id, method.name)

    def _bind(
        self, request: dict[str, Any], session: Any, surrogates: bool
    ) -> tuple[Method, dict[str, Any]]:
        """Check the request's shape, the caller's right and the params; raise RpcError."""
        if request.get("jsonrpc") != "2.0":
            raise RpcError(INVALID_REQUEST, 'member "jsonrpc" must be exactly "2.0"')
        name = request.get("method")
        if type(name) is not str:
            raise RpcError(INVALID_REQUEST, 'member "method" must be a string')
        if surrogates:
            problem = unrepresentable(name, 'member "method"')
            if problem:
                raise RpcError(INVALID_REQUEST, problem)
        params = request.get("params", [])
        if type(params) is not list and type(params) is not dict:
            raise RpcError(INVALID_REQUEST, 'member "params" must be an array or an object')
        method = self._methods.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {quote(name)}")
        role = getattr(session, "role", _CONTROL)
        if role is not _CONTROL and not may_call(role, name):
            identity = getattr(session, "identity", "") or "this connection"
            raise RpcError(
                NOT_AUTHORISED,
                f"not authorised: {identity} may not call {name}",
                {"method": name, "identity": identity},
            )
        if params and not _plain_values(params, surrogates):
            problem = unrepresentable(params, "params", surrogates)
            if problem:
                raise RpcError(INVALID_PARAMS, f"{name}: {problem}")
        return method, bind_params(method, params)

    def _call(self, method: Method, arguments: dict[str, Any], session: Any) -> Any:
        if method.takes_session:
            return method.handler(session, **arguments)
        return method.handler(**arguments)

    def _notify(self, method: Method, arguments: dict[str, Any], session: Any) -> None:
        try:
            result = self._call(method, arguments, session)
        except Exception as error:
            refusal = self._errors.of_exception(error, method.name)
            self._log_notification_failure(refusal, method.name)
            return
        if isinstance(result, Deferred):
            result.addErrback(
                lambda failure: self._log_notification_failure(
                    self._errors.of_failure(failure, method.name), method.name
                )
            )

    def _result_line(self, result: Any, request_id: Any, method_name: str) -> bytes:
        if type(result) is PreEncoded:
            head = (
                b'{"jsonrpc":"2.0","id":%d,"result":' % request_id
                if type(request_id) is int
                else b'{"jsonrpc":"2.0","id":' + encode(request_id) + b',"result":'
            )
            return head + result.json + b"}"
        try:
            return encode({"jsonrpc": "2.0", "id": request_id, "result": result})
        except (ValueError, TypeError, RecursionError) as error:
            reason = unrepresentable(result, "the result") or str(error)
            incident = new_incident()
            log.error(
                "the result of {method} cannot be sent (incident {incident}): {reason}",
                method=method_name,
                incident=incident,
                reason=reason,
            )
            message = f"internal error: {quote(reason)} (incident {incident})"
            refusal = RpcError(INTERNAL_ERROR, message, {"incident": incident})
            return error_line(request_id, refusal)

    def _failure_line(self, failure: Failure, request_id: Any, method_name: str) -> bytes:
        return error_line(request_id, self._errors.of_failure(failure, method_name))

    def _log_notification_failure(self, error: RpcError, method_name: str) -> None:
        log.info(
            "notification {method} failed: {message}", method=method_name, message=error.message
        )


def _plain_values(params: list[Any] | dict[str, Any], surrogates: bool) -> bool:
    """A quick yes for the usual params: strings (without surrogate escapes) and integers."""
    if surrogates:
        return False
    values: Any = params if type(params) is list else params.values()  # type: ignore[union-attr]
    for value in values:
        kind = type(value)
        if kind is not str and kind is not int:
            return False
    return True


def _deferred(result: Any) -> bool:
    """Whether a handler answered with a Deferred.  ``Deferred`` is an ABC, slow to test
    against; a status call's answer, ``PreEncoded``, is ruled out first."""
    return type(result) is not PreEncoded and isinstance(result, Deferred)
