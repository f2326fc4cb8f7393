"""README.md's table of keys and ``etc/dpmd.yaml``, made from the table of keys.

``python -m dpmd.config.docs`` rewrites both in the source tree after a key
changed; tests/test_config_docs.py fails while either differs from what the
table makes, so the documentation cannot drift from what loading enforces.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from .keys import KEYS, SECTIONS, Key

TABLE_START = "<!-- The table of keys is made by python -m dpmd.config.docs. -->\n"
TABLE_END = "<!-- End of the table of keys. -->\n"
WIDTH = 79
YAML_HEADER = """\
# dpmd configuration: every key, set to its built-in default.
#
# Use it with `twistd -n dpmd --config etc/dpmd.yaml`, or copy it and change what
# you need; a key left out keeps its default.  Precedence, strongest first:
# command line > this file > the DATAROOT environment variable > defaults.
# An unknown key, a wrong type or an impossible value stops start-up with
# one line naming the key.
#
# (Made from dpmd's table of keys, dpmd/config/keys.py, by python -m dpmd.config.docs.)
"""
_PLAIN = re.compile(r"[A-Za-z0-9_./-]+")


def yaml_value(value: Any) -> str:
    """A default as the YAML a person writes: ``60``, ``dpm``, ``"5%"``, ``["-o", "x"]``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and _PLAIN.fullmatch(value) and yaml.safe_load(value) == value:
        return value
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value)


def readme_table() -> str:
    """The Markdown table of every key, between its two markers."""
    rows = ["| key | value | default | meaning |", "|---|---|---|---|"]
    for key in KEYS:
        option = f" (option `{key.option}`)" if key.option else ""
        rows.append(f"| `{key.name}` | {key.kind.described} | {_default(key)} | "
                    f"{key.help}{option} |")  # fmt: skip
    return TABLE_START + "".join(row + "\n" for row in rows) + TABLE_END


def _default(key: Key) -> str:
    if key.default is not None:
        return f"`{yaml_value(key.default)}`"
    return key.unset if key.example else f"`null` ({key.unset})"


def example_yaml() -> str:
    """``etc/dpmd.yaml``: every key at its default, with its help, kind and option."""
    blocks = [YAML_HEADER]
    section = ""
    for key in KEYS:
        heading = ""
        if key.section != section:
            section = key.section
            if section:
                heading = _comment(SECTIONS.get(section, ""), "") + f"{section}:\n"
        blocks.append(heading + _key_block(key, "  " if section else ""))
    return "\n".join(blocks)


def _key_block(key: Key, indent: str) -> str:
    details = [f"Type: {_plain_text(key.kind.described)}."]
    if key.default is None:
        details.append(f"Default: {_plain_text(key.unset)}.")
    if key.option:
        details.append(f"Command line: {key.option}.")
    text = _comment(_sentence(key.help), indent) + _comment(" ".join(details), indent)
    text += "".join(f"{indent}#{' ' if note else ''}{note}\n" for note in key.notes)
    name = key.name.rpartition(".")[2]
    if key.default is None and key.example:
        return text + f"{indent}# {name}: {key.example}\n"
    return text + f"{indent}{name}: {yaml_value(key.default)}\n"


def _comment(text: str, indent: str) -> str:
    if not text:
        return ""
    lines = textwrap.wrap(_plain_text(text), WIDTH - len(indent) - 2, break_on_hyphens=False)
    return "".join(f"{indent}# {line}\n" for line in lines)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _plain_text(text: str) -> str:
    """Markdown's code and emphasis marks taken out, for a comment in YAML."""
    return re.sub(r"`([^`]*)`|\*([^*]+)\*", lambda m: m.group(1) or m.group(2), text)


def write(root: Path) -> None:
    """Rewrite ``etc/dpmd.yaml`` and README.md's table of keys under ``root``."""
    (root / "etc" / "dpmd.yaml").write_text(example_yaml(), encoding="utf-8")
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START), text.index(TABLE_END) + len(TABLE_END)
    readme.write_text(text[:start] + readme_table() + text[end:], encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[2])
