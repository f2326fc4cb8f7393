"""What a configuration value may be: its type and bounds, checked and described at once.

A ``Kind`` pairs the check of a value read from YAML (or given on the command
line) with the words the documentation uses for it, so the bound that is
enforced is the bound that is written in README.md and ``etc/dpmd.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpmd.access import private_unix_socket
from dpmd.logs import LEVELS


def plain(value: Any) -> Any:
    """A value of the configuration in force as YAML writes it: paths as strings, lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    return value


@dataclass(frozen=True)
class Kind:
    """One type of value: ``check`` returns the value to use, or raises ``ValueError``
    saying what is wrong; ``described`` names the type and its bounds for the
    documentation; ``shown`` turns a value in force back into YAML (``--print-config``)."""

    check: Callable[[Any], Any]
    described: str
    shown: Callable[[Any], Any] = plain


def type_name(value: Any) -> str:
    """Name a YAML value's type the way the configuration file's author wrote it."""
    names = {
        type(None): "null",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    return names.get(type(value), type(value).__name__)


def integer(minimum: int) -> Kind:
    """Integers of at least ``minimum`` (booleans are not integers here)."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, not {type_name(value)}")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, not {value}")
        return value

    return Kind(check, f"integer, at least {minimum}")


def positive(unit: str) -> Kind:
    """A positive, finite number of ``unit`` (seconds, days), as a float."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number of {unit}, not {type_name(value)}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"must be a positive number of {unit}, not {value}")
        return float(value)

    return Kind(check, f"{unit}, more than 0")


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {type_name(value)}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type_name(value)}")
    if not value:
        raise ValueError("must not be empty")
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _text_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"must be a list of strings, not {type_name(value)}")
    return tuple(_text(item) for item in value)


def _listen_list(value: Any) -> tuple[str, ...]:
    endpoints = _text_list(value)
    if not endpoints:
        raise ValueError("must name at least one endpoint")
    return tuple(private_unix_socket(endpoint) for endpoint in endpoints)


def _optional_endpoint(value: Any) -> str | None:
    """One Twisted endpoint string, or nothing (null or "") for a listener that is off."""
    if value is None or value == "":
        return None
    return _text(value)


def _identity_list(value: Any) -> tuple[str, ...]:
    """Client certificate identities (CN or DNS names), compared without regard to case."""
    identities = _text_list(value)
    for identity in identities:
        if identity != identity.strip() or any(ord(c) < 32 or ord(c) == 127 for c in identity):
            raise ValueError(f"identity {identity!r} has spaces around it or control characters")
    return tuple(identity.lower() for identity in identities)


def _log_level(value: Any) -> str:
    level = _text(value).lower()
    if level == "warning":
        level = "warn"
    if level not in LEVELS:
        raise ValueError(f"must be one of {', '.join(LEVELS)}, not {value!r}")
    return level


def _reserve(value: Any) -> int | float:
    """Bytes (an integer), or a share of the file system: ``"5%"`` (a float, 0.05)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            percent = float(value.strip()[:-1])
        except ValueError:
            raise ValueError(f"must be bytes or a percentage like '5%', not {value!r}") from None
        if not 0 <= percent < 100:
            raise ValueError(f"a percentage must be from 0 to below 100, not {value!r}")
        return percent / 100
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be bytes (an integer) or a percentage like '5%', not {value!r}")
    return value


def _reserve_shown(value: int | float) -> int | str:
    return f"{value * 100:g}%" if isinstance(value, float) else value


BOOLEAN = Kind(_boolean, "`true` or `false`")
TEXT = Kind(_text, "string")
TEXTS = Kind(_text_list, "list of strings")
PATH = Kind(_text, "path")
UNDER_DATAROOT = Kind(_text, "path, relative to `dataroot`")
PATHS_UNDER_DATAROOT = Kind(_text_list, "list of paths, relative to `dataroot`")
ENDPOINTS = Kind(_listen_list, "list of endpoints, at least one")
ENDPOINT_OR_NULL = Kind(_optional_endpoint, "endpoint, or `null`")
IDENTITIES = Kind(_identity_list, "list of identities")
LOG_LEVEL = Kind(_log_level, "one of " + ", ".join(f"`{level}`" for level in LEVELS))
RESERVE = Kind(_reserve, 'bytes, or a percentage like `"5%"`', _reserve_shown)
