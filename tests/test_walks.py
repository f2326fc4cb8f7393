"""The house: how far a request walks, how often a DAQ climbs into the façade, who imports whom.

The walks are those docs/workspace.md describes (``tests.walks``): a QueueDaq
from the line to its reply visits at most 12 rooms and comes back into a room
it had left at most 8 times; one DAQ's life, from QueueDaq to Completed,
enters ``daq/manager.py`` at most twice (accept, finish).  The imports keep
control flowing down: no lower room imports a room above it.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.walks import PACKAGE, TOOLS, life_walk, queue_daq_walk, room_of

ROOT = Path(PACKAGE)


def dpmd_imports(path: Path) -> set[str]:
    """The dpmd modules a file imports (dotted), at its top or inside functions."""
    found: set[str] = set()
    package = ".".join(("dpmd", *path.relative_to(ROOT).parent.parts))
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("dpmd"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.startswith("dpmd"):
                found.add(module)
    return found


def module_file(module: str) -> str:
    """``dpmd.daq.queue`` → ``daq/queue.py``; a package → its ``__init__.py``."""
    relative = Path(*module.split(".")[1:])
    if (ROOT / relative).is_dir():
        return str(relative / "__init__.py")
    return f"{relative}.py"


class WalkTests(SynchronousTestCase):
    def test_a_queue_daq_walks_few_rooms_and_seldom_comes_back(self) -> None:
        walk, written = queue_daq_walk(self)
        reply = json.loads(written.splitlines()[0])
        self.assertEqual(reply["result"], {"id": "WALK.1", "error": False}, walk.describe())
        self.assertLessEqual(len(walk.files), 12, walk.describe())
        self.assertLessEqual(walk.returns, 8, walk.describe())
        used = {target for _, _, target in walk.raw}
        self.assertIn("daq/admission/vetting.py", used, "the specification was checked")
        self.assertEqual(walk.files[0], "rpc/protocol.py")

    def test_a_daqs_life_enters_the_manager_at_most_twice(self) -> None:
        walk, substate = life_walk(self)
        self.assertEqual(substate, "Completed")
        self.assertLessEqual(walk.entries("daq/manager.py"), 2, walk.describe())

    def test_the_walk_counts_hops_and_returns(self) -> None:
        """The measure itself: a use (a call straight back) is not a hop of the walk."""
        from tests.walks import without_uses

        hops = [("call", "a", "b"), ("call", "b", "c"), ("return", "c", "b"),
                ("return", "b", "a"), ("call", "a", "d")]  # fmt: skip
        self.assertEqual(without_uses(hops), [("call", "a", "b"), ("return", "b", "a"),
                                              ("call", "a", "d")])  # fmt: skip


class ImportTests(SynchronousTestCase):
    """Control flows down, and the tools stay tools."""

    def imports_of(self, folder: str) -> dict[str, set[str]]:
        return {str(path.relative_to(ROOT)): dpmd_imports(path)
                for path in sorted((ROOT / folder).rglob("*.py"))}  # fmt: skip

    def test_tools_use_only_tools(self) -> None:
        for tool in TOOLS:
            paths = sorted((ROOT / tool).rglob("*.py")) if tool.endswith("/") else [ROOT / tool]
            for path in paths:
                for module in dpmd_imports(path):
                    room = room_of(str(ROOT / module_file(module)))
                    self.assertIsNone(room, f"{path.relative_to(ROOT)} is a tool but imports "
                                            f"the room {room}")  # fmt: skip

    def test_no_lower_room_imports_a_higher_one(self) -> None:
        above_the_core = ("dpmd.api", "dpmd.server", "dpmd.tap", "dpmd.rpc")
        top_of_the_core = ("dpmd.daq.manager", "dpmd.daq.control", "dpmd.daq.queries",
                           "dpmd.daq.archive")  # fmt: skip
        rules = {
            "stages": ("dpmd.daq", *above_the_core),
            "rpc": ("dpmd.daq", "dpmd.api", "dpmd.server", "dpmd.tap"),
            "daq/admission": (*top_of_the_core, *above_the_core),
            "daq/running": (*top_of_the_core, *above_the_core),
            "daq/persist": (*top_of_the_core, *above_the_core, "dpmd.daq.running",
                            "dpmd.daq.admission"),
            "merge": ("dpmd.daq", "dpmd.stages", *above_the_core),
        }
        for folder, forbidden in rules.items():
            for file, modules in self.imports_of(folder).items():
                for module in modules:
                    self.assertFalse(module.startswith(forbidden),
                                     f"{file} imports {module}")  # fmt: skip
