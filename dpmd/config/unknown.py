"""Unknown keys, named together with the nearest known key of their own level.

A key of a known section is matched against that section's keys
(``limits.merg``: ``limits.merge``), anything else against the top level
(``limit``: ``limits``), in the words ``dpmd.suggest`` shares with the
specification's refusals.  Nothing here runs unless a key is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dpmd.suggest import not_allowed, sentences

from .errors import ConfigError
from .keys import KEYS, KEYS_BY_NAME, SECTION_NAMES


def _levels() -> dict[str, list[str]]:
    """The names each level allows, in the table's order: the top level ("") has the keys
    and the sections without a dot, a section its own keys."""
    levels: dict[str, list[str]] = {"": []}
    for key in KEYS:
        section, _, name = key.name.rpartition(".")
        if (section or name) not in levels[""]:
            levels[""].append(section or name)
        if section:
            levels.setdefault(section, []).append(name)
    return levels


LEVELS = _levels()


class UnknownKeys(ConfigError):
    """Keys the table does not know; ``key`` is the first, the text names them all."""

    def __init__(self, found: Mapping[str, Sequence[str]]) -> None:
        """``found``: the unknown names as shown (``limits.merg``) by layer."""
        parts = []
        for where, names in found.items():
            clauses = _unknown_clauses(names)
            parts.append(f"unknown key{'s' if len(names) > 1 else ''} {where}: "
                         f"{sentences(clauses)}")  # fmt: skip
        super().__init__(next(iter(found.values()))[0], sentences(parts))

    def __str__(self) -> str:
        return self.problem


def _unknown_clauses(names: Sequence[str]) -> list[str]:
    """Each name matched against the names of its own level: 'limits.merg' against the
    keys of ``limits``, 'limitz' against the top level."""
    by_level: dict[str, list[str]] = {}
    for name in names:
        section = _known_section(name)
        by_level.setdefault(section, []).append(name[len(section) + 1 :] if section else name)
    clauses = []
    for section, unknown in by_level.items():
        clauses += not_allowed(unknown, LEVELS[section], f"{section}." if section else "")
    return clauses


def _known_section(name: str) -> str:
    section = name.partition(".")[0]
    return section if section in SECTION_NAMES and section != name else ""


def refuse_unknown(layers: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise ``UnknownKeys`` naming the unknown keys of every layer (by where it is from:
    "in the configuration file", "on the command line"), if any."""
    unknown = {where: names for where, layer in layers.items() if (names := _unknown_in(layer))}
    if unknown:
        raise UnknownKeys(unknown)


def _unknown_in(layer: Mapping[str, Any]) -> list[str]:
    """The unknown keys of a layer, named at the level they are unknown at: a key under
    an unknown section is named by that section."""
    shown: list[str] = []
    for name in layer:
        if name in KEYS_BY_NAME:
            continue
        if not _known_section(name) and name.partition(".")[0] not in LEVELS[""]:
            name = name.partition(".")[0]
        if name not in shown:
            shown.append(name)
    return shown
