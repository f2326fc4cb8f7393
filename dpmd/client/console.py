"""Where ``dpmctl`` writes, and how: JSON or text, colour or not, how wide.

* ``--json``: one JSON value per result on stdout, and a failure is also one
  object ``{"error": {"code", "kind", "message"[, "data"]}}`` there, so a
  script reads stdout only;
* colour (``--color auto|always|never``): ``auto`` colours a terminal unless
  ``$NO_COLOR`` is set (https://no-color.org) or ``$TERM`` is ``dumb``;
* width: a terminal's own, read again at every output so a resized window
  is followed; output to a file or pipe is never wrapped (one record, one
  line, for ``grep``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console as RichConsole
from rich.console import RenderableType

COLOUR_CHOICES = ("auto", "always", "never")
OK, FAILED, USAGE_ERROR, CANNOT_CONNECT, INTERRUPTED, TERMINATED = 0, 1, 2, 3, 130, 143
"""dpmctl's exit statuses: done; refused or failed; usage error; no connection; Ctrl-C
(SIGINT); SIGTERM (a supervisor, ``timeout``): the shell's 128 + the signal's number."""
UNLIMITED_WIDTH = 10_000
"""The width of output that is not a terminal: wide enough for any line dpmctl writes."""


def wants_colour(choice: str, terminal: bool, environ: Mapping[str, str]) -> bool:
    """Whether to colour, from ``--color`` and the environment.

    ``always`` and ``never`` win over everything, as the ``NO_COLOR``
    convention asks of a command-line option.
    """
    if choice not in COLOUR_CHOICES:
        raise ValueError(f"--color must be one of {', '.join(COLOUR_CHOICES)}, not {choice!r}")
    if choice != "auto":
        return choice == "always"
    return terminal and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


class UsageProblem(Exception):
    """A command line that names something unusable, found before connecting.

    ``usage`` is the synopsis of the command concerned, when the parser found it.
    """

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class Problem:
    """A failed command as dpmctl reports it.

    ``kind`` names what went wrong (``DaqException``, ``RpcError``,
    ``ProtocolError``, ``ConnectFailed``, ``ConnectionLost``, ``UsageError``);
    ``code`` is the JSON-RPC error code when the server sent one, else
    ``None``; ``hint`` is a second line for people only.
    """

    kind: str
    message: str
    code: int | None = None
    data: Any = None
    hint: str = ""

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "kind": self.kind, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"error": error}


@dataclass
class Console:
    """``out`` and ``err`` with the output policy of one ``dpmctl`` run.

    ``terminal`` says that ``out`` is a terminal, where progress can be
    redrawn in place; ``colour`` defaults to it; ``width`` to the
    terminal's width, or to no limit when ``out`` is not a terminal.
    """

    out: TextIO
    err: TextIO
    as_json: bool
    terminal: bool
    colour: bool | None = None
    width: int | None = None
    rich: RichConsole = field(init=False, repr=False)

    def __post_init__(self) -> None:
        colour = self.terminal if self.colour is None else self.colour
        self.colour = colour
        self.rich = RichConsole(
            file=self.out,
            force_terminal=self.terminal,
            force_interactive=self.terminal,
            color_system=("auto" if self.terminal else "standard") if colour else None,
            no_color=not colour,
            width=self.width if self.width or self.terminal else UNLIMITED_WIDTH,
            markup=False,
            emoji=False,
            highlight=False,
            legacy_windows=False,
        )

    def json(self, value: Any) -> None:
        self.out.write(json.dumps(value) + "\n")
        self.out.flush()

    def text(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def print(self, renderable: RenderableType) -> None:
        """Render to the width, without the padding rich leaves at the end of lines."""
        with self.rich.capture() as capture:
            self.rich.print(renderable)
        self.out.write("".join(line.rstrip(" ") + "\n" for line in capture.get().splitlines()))
        self.out.flush()

    def show(self, value: Any, renderable: RenderableType) -> None:
        """``value`` as JSON under ``--json``, else ``renderable`` for people."""
        if self.as_json:
            self.json(value)
        else:
            self.print(renderable)

    def note(self, text: str) -> None:
        """A line for the person at the terminal, on stderr: stdout stays the command's output."""
        self.err.write(text + "\n")
        self.err.flush()

    def fail(self, problem: Problem) -> None:
        """The problem on stderr, and under ``--json`` as one object on stdout too."""
        hint = f"\n  {problem.hint}" if problem.hint else ""
        self.err.write(f"dpmctl: {problem.message}{hint}\n")
        self.err.flush()
        if self.as_json:
            self.json(problem.to_json())
