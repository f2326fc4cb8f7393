"""Loading: built-in defaults < ``$DATAROOT`` < YAML file < command line, checked.

Every value is checked by its key's kind (``keys.KEYS``); the rules that
involve more than one key follow.  A bad value stops start-up with one line
naming the key and the problem (``ConfigError``), never with a traceback; the
unknown keys of both layers are named together (``unknown``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .keys import KEYS, SECTION_NAMES
from .kinds import type_name
from .model import Config, assemble
from .unknown import refuse_unknown


def _flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Turn nested mappings into dotted keys; a mapping where a value belongs is kept whole."""
    flat: dict[str, Any] = {}
    for name, value in document.items():
        if not isinstance(name, str):
            raise ConfigError(f"{prefix}{name}", "key names must be strings")
        dotted = f"{prefix}{name}"
        if dotted in SECTION_NAMES:
            if not isinstance(value, Mapping):
                raise ConfigError(dotted, f"must be a mapping, not {type_name(value)}")
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML configuration file into dotted keys, without validating values."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as error:
        raise ConfigError("--config", f"cannot read {os.fspath(path)}: {error.strerror}") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError("--config", f"{os.fspath(path)} is not valid YAML{at}") from None
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ConfigError("--config", f"{os.fspath(path)} must hold a mapping of keys")
    return _flatten(document)


def build_config(
    file_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Config:
    """Merge the layers and validate every value.

    ``overrides`` are the command-line values, already in dotted-key form.
    """
    environ = os.environ if environ is None else environ
    layers = {
        "in the configuration file": file_values or {},
        "on the command line": overrides or {},
    }
    refuse_unknown(layers)
    values: dict[str, Any] = {key.name: key.default for key in KEYS}
    if environ.get("DATAROOT"):
        values["dataroot"] = environ["DATAROOT"]
    for layer in layers.values():
        values.update(layer)
    checked: dict[str, Any] = {}
    for key in KEYS:
        value = values[key.name]
        if value is None and key.default is None:
            checked[key.name] = None
            continue
        try:
            checked[key.name] = key.kind.check(value)
        except ValueError as error:
            raise ConfigError(key.name, str(error)) from None
    _check_together(checked)
    return assemble(_resolved(checked, cwd))


def _check_together(checked: Mapping[str, Any]) -> None:
    """Rules that involve more than one key."""
    if checked["watchdog.kill"] <= checked["watchdog.stall"]:
        raise ConfigError("watchdog.kill", f"must be more than watchdog.stall "
                                           f"({checked['watchdog.stall']:g} s)")  # fmt: skip
    if checked["max_buffered_bytes"] < checked["max_line_bytes"]:
        raise ConfigError(
            "max_buffered_bytes",
            f"must be at least max_line_bytes ({checked['max_line_bytes']}), or a line of that "
            f"length could never be read, not {checked['max_buffered_bytes']}",
        )
    both = sorted(set(checked["access.control"]) & set(checked["access.read"]))
    if both:
        raise ConfigError("access.read", f"identity {both[0]!r} is in access.control too")


def _resolved(checked: Mapping[str, Any], cwd: str | None) -> dict[str, Any]:
    """The values that depend on where dpmd runs: paths made absolute under dataroot, the
    server's own interpreter when none is named."""
    values = dict(checked)
    dataroot = Path(checked["dataroot"] or cwd or os.getcwd()).absolute()
    values["dataroot"] = dataroot
    values["workspace"] = dataroot / checked["workspace"]
    values["release_dir"] = release_dir = dataroot / checked["release_dir"]
    values["release.allowed"] = _allowed_roots(dataroot, release_dir, checked["release.allowed"])
    values["python"] = checked["python"] or sys.executable
    return values


def _allowed_roots(dataroot: Path, release_dir: Path, entries: tuple[str, ...]) -> tuple[Path, ...]:
    """``release_dir`` and each entry (relative to dataroot), normalised, without repeats."""
    roots: list[Path] = []
    for entry in (str(release_dir), *entries):
        root = Path(os.path.normpath(dataroot / entry))
        if root not in roots:
            roots.append(root)
    return tuple(roots)
