"""The table of keys is the one declaration: Config, --print-config, README.md's table and
etc/dpmd.yaml are made from it, and these tests fail when one of them disagrees."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dpmd.config import KEYS, Config, build_config, effective_document
from dpmd.config.docs import TABLE_END, TABLE_START, example_yaml, readme_table, write
from dpmd.config.load import _flatten
from dpmd.config.model import section_types
from dpmd.tap import Options

ROOT = Path(__file__).parent.parent
CONSOLE = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)
REMAKE = "made from dpmd/config/keys.py: run python -m dpmd.config.docs"


class MadeFromTheTableTests(SynchronousTestCase):
    def test_readme_table(self) -> None:
        text = (ROOT / "README.md").read_text()
        start, end = text.index(TABLE_START), text.index(TABLE_END) + len(TABLE_END)
        self.assertEqual(text[start:end], readme_table(), REMAKE)

    def test_example_configuration(self) -> None:
        self.assertEqual((ROOT / "etc" / "dpmd.yaml").read_text(), example_yaml(), REMAKE)

    def test_the_command_remakes_both(self) -> None:
        root = Path(self.mktemp())
        (root / "etc").mkdir(parents=True)
        (root / "etc" / "dpmd.yaml").write_text("stale: 1\n")
        shutil.copy(ROOT / "README.md", root / "README.md")
        readme = (root / "README.md").read_text()
        (root / "README.md").write_text(readme.replace(readme_table(), TABLE_START + TABLE_END))
        write(root)
        self.assertEqual((root / "etc" / "dpmd.yaml").read_text(), example_yaml())
        self.assertEqual((root / "README.md").read_text(), readme)


class ConfigFromTheTableTests(SynchronousTestCase):
    def test_every_field_of_config_is_a_key_and_every_key_a_field(self) -> None:
        fields = []
        for field in dataclasses.fields(Config):
            section = section_types().get(field.name)
            if section is None:
                fields.append(field.name)
            else:
                fields += [f"{field.name}.{inner.name}" for inner in dataclasses.fields(section)]
        self.assertEqual(sorted(fields), sorted(key.attribute for key in KEYS))

    def test_the_defaults_pass_their_own_checks(self) -> None:
        for key in KEYS:
            if key.default is not None:
                with self.subTest(key=key.name):
                    key.kind.check(key.default)

    def test_print_config_reads_back_as_the_same_configuration(self) -> None:
        config = build_config({"storage.reserve": 4096, "limits.merge": 3,
                               "access.read": ["OCM"], "metrics.listen": "tcp:9108"},
                              environ={}, cwd="/data")  # fmt: skip
        document = effective_document(config)
        self.assertEqual(list(_flatten(document)), [key.name for key in KEYS])
        self.assertEqual(build_config(_flatten(document), environ={}), config)

    def test_a_percentage_reserve_is_printed_as_written(self) -> None:
        document = effective_document(build_config({"storage.reserve": "2.5%"}, environ={}))
        self.assertEqual(document["storage"]["reserve"], "2.5%")


class CommandLineTests(SynchronousTestCase):
    """``twistd dpmd --help`` names the keys' options and states the table's defaults."""

    def test_each_option_of_a_key_is_an_option_of_twistd_dpmd(self) -> None:
        options = {f"--{name}": doc for name, doc in self.option_docs()}
        for key in KEYS:
            if key.option:
                with self.subTest(key=key.name):
                    self.assertIn(key.option, options)
                    stated = re.search(r"\[default: ([^\]]+)\]", options[key.option])
                    if stated:
                        shown = key.default[0] if isinstance(key.default, tuple) else key.default
                        self.assertEqual(stated.group(1), str(shown))

    @staticmethod
    def option_docs() -> list[tuple[str, str]]:
        options = Options()
        found = [(flag, doc) for flag, _, doc in options.optFlags]
        found += [(name, doc) for name, _, _, doc in options.optParameters]
        found += [(name.replace("_", "-"), getattr(options, f"opt_{name}").__doc__ or "")
                  for name in ("listen",)]  # fmt: skip
        return found


class ReadmeExampleTests(SynchronousTestCase):
    """The configuration section's example of a typo runs as written, with that output."""

    def test_the_unknown_keys_example(self) -> None:
        text = (ROOT / "README.md").read_text()
        section = text[text.index("\n## Configuration\n") : text.index(TABLE_END) + 2000]
        (example,) = [block for block in CONSOLE.findall(section) if "typo.yaml" in block]
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / ".venv").symlink_to(sys.prefix)
        environ = dict(os.environ, PYTHONPATH=str(ROOT), DATAROOT=str(directory))
        commands: list[tuple[str, list[str]]] = []
        for line in example.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            else:
                commands[-1][1].append(line + "\n")
        for command, shown in commands:
            result = subprocess.run(command, shell=True, cwd=directory, env=environ,
                                    capture_output=True, text=True, timeout=60)  # fmt: skip
            self.assertEqual(result.stdout + result.stderr, "".join(shown), command)
