"""The method table: what may be called, and how a request's params are bound to it.

A ``Method`` names its handler and declares its parameters (``Param``);
``bind_params`` turns a request's ``params`` (by position or by name) into
the handler's keyword arguments, once, here, so that every ``-32602`` error
names the offending parameter the same way and no handler checks its own
arguments' shape.  The checks are plain functions (``string_param`` and the
API's own) that return the value to pass or raise ``ValueError`` saying what
was wrong.

It knows JSON values and ``RpcError``, nothing of lines, sessions or the DPM;
the dispatcher calls it, the API declares its interfaces with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dpmd.encoding import quote
from dpmd.rpc.errors import INVALID_PARAMS, RpcError

REQUIRED: Any = object()
"""The default of a parameter that must be given."""


@dataclass(frozen=True)
class Param:
    """A declared parameter: ``check`` returns the value to pass or raises ``ValueError``;
    one with a ``default`` may be left out."""

    name: str
    check: Callable[[Any], Any]
    default: Any = REQUIRED


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


def bind_params(method: Method, params: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """The handler's keyword arguments for ``params``; raises ``RpcError`` (-32602) naming
    the parameter that is unknown, missing or wrong.

    The usual call (every parameter given by position, every check passing)
    takes one loop; any problem is then looked for again by the slow path,
    which says what it is.
    """
    declared = method.params
    if type(params) is list and len(params) == len(declared):
        arguments: dict[str, Any] = {}
        try:
            for index, param in enumerate(declared):
                arguments[param.name] = param.check(params[index])
        except ValueError:
            pass  # the slow path below names the parameter
        else:
            return arguments
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
                f"{method.name} has no parameter {quote(unknown[0])!r} (parameters: {names})",
            )
        given = dict(params)
    arguments = {}
    for param in declared:
        if param.name not in given:
            if param.default is not REQUIRED:
                arguments[param.name] = param.default
                continue
            raise RpcError(INVALID_PARAMS, f"{method.name}: missing parameter {param.name!r}")
        try:
            arguments[param.name] = param.check(given[param.name])
        except ValueError as error:
            raise RpcError(
                INVALID_PARAMS, f"{method.name}: parameter {param.name!r} {error}"
            ) from None
    return arguments
