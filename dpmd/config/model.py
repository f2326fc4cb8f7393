"""The configuration in force, as the rest of dpmd reads it, and its way back to YAML.

``Config`` and its sections are the typed face of the table of keys: each field
is filled by the key that names it (``Key.attribute``), so ``assemble`` and
``effective_document`` walk the table instead of spelling every key out again.
A test holds the fields and the table to one another.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from .keys import KEYS


@dataclass(frozen=True)
class Limits:
    """Concurrency bounds: DAQs past Scheduled, merges and file transfers at once."""

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
        """The stall and kill budgets of a stage whose input is ``input_bytes`` long."""
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
    watchdog: WatchdogConfig
    archive: ArchiveConfig
    release_allowed: tuple[Path, ...]
    """Directories a local receiver may be under; ``release_dir`` is always one of them."""
    storage_reserve: int | float
    """Bytes, or (a float) the share of the workspace's file system, that stages leave free."""
    storage_max_age: float
    max_connections: int
    max_buffered_bytes: int
    access: AccessConfig
    metrics_listen: str | None
    """The endpoint of the metrics page (``metrics.listen``), or None: no metrics."""


@functools.cache
def section_types() -> dict[str, type]:
    """The dataclass of each section field of ``Config`` (``"limits"``: ``Limits``)."""
    hints = typing.get_type_hints(Config)
    return {name: kind for name, kind in hints.items() if hasattr(kind, "__dataclass_fields__")}


def assemble(values: Mapping[str, Any]) -> Config:
    """``Config`` from the final value of every key (by key name), each put in its field."""
    fields: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key in KEYS:
        section, _, name = key.attribute.rpartition(".")
        (sections.setdefault(section, {}) if section else fields)[name] = values[key.name]
    types = section_types()
    fields.update((section, types[section](**members)) for section, members in sections.items())
    return Config(**fields)


def effective_document(config: Config) -> dict[str, Any]:
    """The configuration in force, as the nested mapping of a configuration file, with
    every path made absolute: what ``twistd dpmd --print-config`` prints."""
    document: dict[str, Any] = {}
    for key in KEYS:
        place = document
        *sections, name = key.name.split(".")
        for section in sections:
            place = place.setdefault(section, {})
        place[name] = key.kind.shown(attrgetter(key.attribute)(config))
    return document
