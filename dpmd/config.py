"""dpmd's configuration: built-in defaults < ``$DATAROOT`` < YAML file < command line.

Every key is declared once in ``KEYS`` with its type check and default, so the
validation, the defaults and the error messages cannot drift apart.  A bad
value stops start-up with one line naming the key and the problem
(``ConfigError``), never with a traceback.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dpmd.access import private_unix_socket
from dpmd.logs import LEVELS

LOG_LEVELS = LEVELS


class ConfigError(Exception):
    """An unusable configuration value; the text names the key and the problem."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"configuration key '{key}': {problem}")
        self.key = key
        self.problem = problem


def _type_name(value: Any) -> str:
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


def _integer_from(minimum: int) -> Callable[[Any], int]:
    """A check for integers of at least ``minimum`` (booleans are not integers here)."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, not {_type_name(value)}")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, not {value}")
        return value

    return check


_positive_int = _integer_from(1)


def _positive_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of seconds, not {_type_name(value)}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a positive number of seconds, not {value}")
    return float(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {_type_name(value)}")
    return value


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


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_type_name(value)}")
    if not value:
        raise ValueError("must not be empty")
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _text_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"must be a list of strings, not {_type_name(value)}")
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
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
    return level


@dataclass(frozen=True)
class Key:
    """One configuration key: its dotted name, its check and its default."""

    name: str
    check: Callable[[Any], Any]
    default: Any
    help: str


KEYS: tuple[Key, ...] = (
    Key("dataroot", _text, None, "root of relative paths; default $DATAROOT, else the cwd"),
    Key("create_dataroot", _boolean, False, "create dataroot if it does not exist"),
    Key("workspace", _text, "dpm", "the DAQ workspace, relative to dataroot"),
    Key("listen", _listen_list, ("tcp:12083:interface=127.0.0.1",), "server endpoints"),
    Key("release_dir", _text, "released", "where products go without receivers"),
    Key("log_level", _log_level, "info", "lowest level of dpmd events logged"),
    Key("python", _text, None, "interpreter of the child programs; default: the server's"),
    Key("limits.daq", _positive_int, 1, "DAQs past Scheduled at once"),
    Key("limits.merge", _positive_int, 1, "merges at once"),
    Key("limits.transfer", _positive_int, 2, "file transfers at once"),
    Key("max_line_bytes", _integer_from(1024), 16 * 1024 * 1024, "longest request line"),
    Key("storage_interval", _positive_seconds, 60.0, "seconds between /dpm/storage samples"),
    Key("shutdown_timeout", _positive_seconds, 30.0, "seconds a child has between TERM and KILL"),
    Key("transfer.rsync", _text, "rsync", "the rsync program"),
    Key("transfer.rsync_options", _text_list, (), "extra rsync options, e.g. --bwlimit=50m"),
    Key("transfer.ssh", _text, "ssh", "the ssh program rsync and releases use"),
    Key(
        "transfer.ssh_options",
        _text_list,
        ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10"),
        "options given to every ssh",
    ),
    Key("transfer.timeout", _positive_seconds, 120.0, "seconds of silence before a transfer fails"),
    Key("transfer.retries", _integer_from(0), 2, "retries of a failed transfer before the alert"),
    Key("transfer.retry_delay", _positive_seconds, 5.0, "seconds before the first retry (doubles)"),
    Key("watchdog.stall", _positive_seconds, 60.0, "seconds of silence before StageStalled"),
    Key("watchdog.kill", _positive_seconds, 300.0, "seconds of silence before a child is stopped"),
    Key("watchdog.rate", _positive_int, 100 * 1024 * 1024,
        "bytes/s: both budgets grow by the time the DAQ's input takes at this rate"),
    Key("archive.keep_days", _positive_seconds, 30.0, "days archived DAQ folders (logs) are kept"),
    Key("archive.check_interval", _positive_seconds, 3600.0, "seconds between retention runs"),
    Key("release.allowed", _text_list, (".",), "directories local receivers may be under"),
    Key("storage.reserve", _reserve, "5%", "space kept free: no stage starts below it"),
    Key("storage.max_age", _positive_seconds, 1.0, "oldest storage sample a query gets"),
    Key("max_connections", _positive_int, 200, "client connections at once, in all"),
    Key(
        "max_buffered_bytes",
        _integer_from(1024),
        64 * 1024 * 1024,
        "request bytes read and not yet handled, all connections together",
    ),
    Key("access.control", _identity_list, (), "certificate identities allowed every method"),
    Key("access.read", _identity_list, (), "certificate identities allowed to read and subscribe"),
    Key("metrics.listen", _optional_endpoint, None,
        "endpoint of the Prometheus/OpenMetrics page /metrics; off when null or empty"),
)
KEYS_BY_NAME = {key.name: key for key in KEYS}


@dataclass(frozen=True)
class Limits:
    daq: int
    merge: int
    transfer: int


@dataclass(frozen=True)
class TransferConfig:
    """How files travel to and from other hosts (rsync over ssh)."""

    rsync: str
    rsync_options: tuple[str, ...]
    ssh: str
    ssh_options: tuple[str, ...]
    timeout: float
    retries: int
    retry_delay: float


@dataclass(frozen=True)
class WatchdogConfig:
    """How long a stage's child may be silent (floors; they grow with the input)."""

    stall: float
    kill: float
    rate: int

    def budgets(self, input_bytes: int) -> tuple[float, float]:
        extra = input_bytes / self.rate
        return self.stall + extra, self.kill + extra


@dataclass(frozen=True)
class ArchiveConfig:
    """Retention of finished DAQs' folders (their records stay in the store for ever)."""

    keep_days: float
    check_interval: float


@dataclass(frozen=True)
class AccessConfig:
    """Who may do what on listeners that authenticate clients (``mtls:``)."""

    control: tuple[str, ...]
    read: tuple[str, ...]


@dataclass(frozen=True)
class Config:
    """The validated configuration, with every path made absolute."""

    dataroot: Path
    create_dataroot: bool
    workspace: Path
    listen: tuple[str, ...]
    release_dir: Path
    log_level: str
    python: str
    """The interpreter that runs dpmd's own child programs (merger, copier, checksum)."""
    limits: Limits
    max_line_bytes: int
    storage_interval: float
    shutdown_timeout: float
    transfer: TransferConfig
    archive: ArchiveConfig
    watchdog: WatchdogConfig
    release_allowed: tuple[Path, ...] = ()
    """Directories a local receiver may be under; ``release_dir`` is always one of them."""
    storage_max_age: float = 1.0
    storage_reserve: int | float = 0.05
    """Bytes, or (a float) the share of the workspace's file system, that stages leave free."""
    max_connections: int = 200
    max_buffered_bytes: int = 64 * 1024 * 1024
    access: AccessConfig = AccessConfig((), ())
    metrics_listen: str | None = None
    """The endpoint of the metrics page (``metrics.listen``), or None: no metrics."""


def _flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Turn nested mappings into dotted keys; a mapping where a value belongs is kept whole."""
    flat: dict[str, Any] = {}
    for name, value in document.items():
        if not isinstance(name, str):
            raise ConfigError(f"{prefix}{name}", "key names must be strings")
        dotted = f"{prefix}{name}"
        is_section = any(key.name.startswith(dotted + ".") for key in KEYS)
        if is_section:
            if not isinstance(value, Mapping):
                raise ConfigError(dotted, f"must be a mapping, not {_type_name(value)}")
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
    values: dict[str, Any] = {key.name: key.default for key in KEYS}
    if environ.get("DATAROOT"):
        values["dataroot"] = environ["DATAROOT"]
    for layer in (file_values or {}, overrides or {}):
        for name, value in layer.items():
            if name not in KEYS_BY_NAME:
                known = ", ".join(key.name for key in KEYS)
                raise ConfigError(name, f"unknown key (known keys: {known})")
            values[name] = value
    checked: dict[str, Any] = {}
    for key in KEYS:
        value = values[key.name]
        if value is None and key.default is None:
            checked[key.name] = None
            continue
        try:
            checked[key.name] = key.check(value)
        except ValueError as error:
            raise ConfigError(key.name, str(error)) from None
    if checked["watchdog.kill"] <= checked["watchdog.stall"]:
        raise ConfigError("watchdog.kill", f"must be more than watchdog.stall "
                                           f"({checked['watchdog.stall']:g} s)")  # fmt: skip
    dataroot = Path(checked["dataroot"] or cwd or os.getcwd()).absolute()
    _check_together(checked)
    release_dir = dataroot / checked["release_dir"]
    return Config(
        dataroot=dataroot,
        create_dataroot=checked["create_dataroot"],
        workspace=dataroot / checked["workspace"],
        listen=checked["listen"],
        release_dir=release_dir,
        log_level=checked["log_level"],
        python=checked["python"] or sys.executable,
        limits=Limits(
            daq=checked["limits.daq"],
            merge=checked["limits.merge"],
            transfer=checked["limits.transfer"],
        ),
        max_line_bytes=checked["max_line_bytes"],
        storage_interval=checked["storage_interval"],
        shutdown_timeout=checked["shutdown_timeout"],
        transfer=TransferConfig(
            rsync=checked["transfer.rsync"],
            rsync_options=checked["transfer.rsync_options"],
            ssh=checked["transfer.ssh"],
            ssh_options=checked["transfer.ssh_options"],
            timeout=checked["transfer.timeout"],
            retries=checked["transfer.retries"],
            retry_delay=checked["transfer.retry_delay"],
        ),
        watchdog=WatchdogConfig(
            stall=checked["watchdog.stall"],
            kill=checked["watchdog.kill"],
            rate=checked["watchdog.rate"],
        ),
        archive=ArchiveConfig(
            keep_days=checked["archive.keep_days"],
            check_interval=checked["archive.check_interval"],
        ),
        release_allowed=_allowed_roots(dataroot, release_dir, checked["release.allowed"]),
        storage_max_age=checked["storage.max_age"],
        storage_reserve=checked["storage.reserve"],
        max_connections=checked["max_connections"],
        max_buffered_bytes=checked["max_buffered_bytes"],
        access=AccessConfig(control=checked["access.control"], read=checked["access.read"]),
        metrics_listen=checked["metrics.listen"],
    )


def _check_together(checked: Mapping[str, Any]) -> None:
    """Rules that involve more than one key."""
    if checked["max_buffered_bytes"] < checked["max_line_bytes"]:
        raise ConfigError(
            "max_buffered_bytes",
            f"must be at least max_line_bytes ({checked['max_line_bytes']}), or a line of that "
            f"length could never be read, not {checked['max_buffered_bytes']}",
        )
    both = sorted(set(checked["access.control"]) & set(checked["access.read"]))
    if both:
        raise ConfigError("access.read", f"identity {both[0]!r} is in access.control too")


def _allowed_roots(dataroot: Path, release_dir: Path, entries: tuple[str, ...]) -> tuple[Path, ...]:
    """``release_dir`` and each entry (relative to dataroot), normalised, without repeats."""
    roots: list[Path] = []
    for entry in (str(release_dir), *entries):
        root = Path(os.path.normpath(dataroot / entry))
        if root not in roots:
            roots.append(root)
    return tuple(roots)


def effective_document(config: Config) -> dict[str, Any]:
    """The configuration in force, as the nested mapping of a configuration file, with
    every path made absolute: what ``twistd dpmd --print-config`` prints."""
    flat: dict[str, Any] = {
        "dataroot": str(config.dataroot),
        "create_dataroot": config.create_dataroot,
        "workspace": str(config.workspace),
        "listen": list(config.listen),
        "release_dir": str(config.release_dir),
        "log_level": config.log_level,
        "python": config.python,
        "limits": vars(config.limits),
        "max_line_bytes": config.max_line_bytes,
        "storage_interval": config.storage_interval,
        "shutdown_timeout": config.shutdown_timeout,
        "transfer": {name: list(value) if isinstance(value, tuple) else value
                     for name, value in vars(config.transfer).items()},
        "watchdog": vars(config.watchdog),
        "archive": vars(config.archive),
        "release": {"allowed": [str(path) for path in config.release_allowed]},
        "storage": {"max_age": config.storage_max_age,
                    "reserve": (f"{config.storage_reserve * 100:g}%"
                                if isinstance(config.storage_reserve, float)
                                else config.storage_reserve)},
        "max_connections": config.max_connections,
        "max_buffered_bytes": config.max_buffered_bytes,
        "access": {"control": list(config.access.control), "read": list(config.access.read)},
        "metrics": {"listen": config.metrics_listen},
    }  # fmt: skip
    return {name: dict(value) if isinstance(value, dict) else value for name, value in flat.items()}
