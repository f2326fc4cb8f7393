"""``dpmctl``'s command line: commands, options, and usage errors that ``--json`` can report.

The connection options (``--connect``, ``--json``, ``--color``) are accepted
before and after the command; ``dpmctl completion bash|zsh`` prints a
completion script that ``shtab`` derives from this parser, so it always
knows every command and option.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import shtab

import dpmd
from dpmd.client.api import DEFAULT_TIMELINE_LIMIT
from dpmd.client.console import COLOUR_CHOICES, UsageProblem
from dpmd.client.endpoints import DEFAULT_ENDPOINT, USAGE
from dpmd.client.timeline import date_argument

ETC = Path(dpmd.__file__).parent / "etc"
"""The example configuration, the systemd unit and the Grafana dashboard, installed
with the package."""
SHELLS = ("bash", "zsh")


class Parser(argparse.ArgumentParser):
    """Raises ``UsageProblem`` instead of exiting, so ``--json`` can report it too."""

    def error(self, message: str) -> NoReturn:
        raise UsageProblem(message, self.format_usage())


def _add_common_options(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    parser.add_argument(
        "--connect",
        metavar="ENDPOINT",
        default=defaults["connect"],
        help=f"server endpoint ({USAGE}); default $DPMCTL_CONNECT or {DEFAULT_ENDPOINT}",
    )
    parser.add_argument(
        "--json", action="store_true", default=defaults["json"], help="machine-readable output"
    )
    parser.add_argument(
        "--color",
        choices=COLOUR_CHOICES,
        default=defaults["color"],
        help="colour the output: auto (a terminal, unless $NO_COLOR is set), always, never",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _add_inspection_commands(command: Any) -> None:
    """provenance, timeline, check, fsck and checksum (``dpmd.client.examine``)."""
    provenance = command("provenance", "where each card of a DAQ's product header came from")
    provenance.add_argument("id", metavar="ID")
    provenance.add_argument(
        "keyword", metavar="KEYWORD", nargs="?",
        help="only this keyword's cards, each with all the cards it overrode",
    )  # fmt: skip
    timeline = command("timeline", "the DAQs of a period: time per stage, and a summary")
    dates = "ISO 8601 or YYYY-MM-DD, local time unless it names a zone (Z, +01:00)"
    timeline.add_argument("--since", metavar="DATE", type=date_argument,
                          help=f"DAQs that finished at or after DATE ({dates})")  # fmt: skip
    timeline.add_argument("--until", metavar="DATE", type=date_argument,
                          help="DAQs that finished at or before DATE")  # fmt: skip
    timeline.add_argument("--limit", metavar="N", type=_positive, default=DEFAULT_TIMELINE_LIMIT,
                          help=f"at most N DAQs (default {DEFAULT_TIMELINE_LIMIT})")  # fmt: skip
    check = command("check", "a dry run of a specification: problems, planned header and HDUs")
    check.add_argument(
        "specification", metavar="SPEC.json|-", help="the file, or - for stdin"
    ).complete = shtab.FILE
    fsck = command("fsck", "check the workspace against the server's store")
    fsck.add_argument("--repair", action="store_true", help="also fix what is safe to fix")
    checksum = command(
        "checksum", "size, BLAKE2b-512 and FITS CHECKSUM/DATASUM of files (needs no server)"
    )
    checksum.add_argument("files", metavar="FILE", nargs="+").complete = shtab.FILE


def _add_spec_commands(command: Any, common: argparse.ArgumentParser) -> None:
    """``spec new`` and ``spec schema`` (``dpmd.client.specification``; no server)."""
    spec = command("spec", "a specification to start from, or its JSON Schema (no server)")
    kinds = spec.add_subparsers(dest="spec_command", required=True, metavar="SUBCOMMAND")
    text = "print a specification that merges these FITS files, to edit and check"
    new = kinds.add_parser("new", help=text, description=text, parents=[common])
    new.add_argument("files", metavar="FILE.fits", nargs="+").complete = shtab.FILE
    new.add_argument(
        "--id", metavar="ID", help="the DAQ id, also the product's fileId (default: DAQ.<UTC time>)"
    )
    new.add_argument(
        "--receiver",
        metavar="DIR",
        action="append",
        help="a directory the product is released to (repeatable); default: the server's "
        "release_dir",
    ).complete = shtab.DIRECTORY
    text = "print the JSON Schema of a specification (for editors)"
    kinds.add_parser("schema", help=text, description=text, parents=[common])


def build_parser(environ: Mapping[str, str]) -> Parser:
    parser = Parser(
        prog="dpmctl",
        description="Talk to a dpmd (Data Product Manager) server.",
        epilog="exit status: 0 ok, 1 refused by the DPM (DaqException) or failed, or a\n"
        "  problem found (check, fsck, checksum), 2 usage error, 3 cannot connect,\n"
        "  130 interrupted (Ctrl-C), 143 stopped by SIGTERM\n"
        "installed with dpmd: the example configuration (dpmd.yaml), the systemd\n"
        "unit (dpmd.service) and the Grafana dashboard (grafana-dpmd.json), in\n"
        f"  {ETC}\n"
        "shell completion: dpmctl completion bash|zsh (see the README)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dpmctl {dpmd.__version__}")
    _add_common_options(
        parser,
        {
            "connect": environ.get("DPMCTL_CONNECT") or DEFAULT_ENDPOINT,
            "json": False,
            "color": "auto",
        },
    )
    # The same options after the command too; SUPPRESS keeps a value given before it.
    common = Parser(add_help=False)
    _add_common_options(common, dict.fromkeys(("connect", "json", "color"), argparse.SUPPRESS))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text, parents=[common])

    queue = command("queue", "queue a DAQ from a Data Product Specification")
    queue.add_argument(
        "specification", metavar="SPEC.json|-", help="the file, or - for stdin"
    ).complete = shtab.FILE  # type: ignore[attr-defined]
    for name, text in [
        ("status", "status of a DAQ, archived ones included"),
        ("internal", "a DAQ's status with the server's details"),
        ("abort", "abort a DAQ"),
        ("retry", "retry the failed merge step of a DAQ"),
    ]:
        command(name, text).add_argument("id", metavar="ID")
    command("active", "table of the DAQs not yet archived")
    command("storage", "space on the server's workspace file system")
    watch = command("watch", "follow status changes and progress live")
    watch.add_argument("id", metavar="ID", nargs="?", help="follow this DAQ until it ends")
    command("exit", "stop the server cleanly")
    demo_command = command("demo", "merge a small generated data product, end to end")
    demo_command.add_argument(
        "--dir", metavar="DIR", help="write the sources here (kept); default: a temporary folder"
    ).complete = shtab.DIRECTORY  # type: ignore[attr-defined]
    demo_command.add_argument(
        "--keep", action="store_true", help="keep the temporary folder of the sources"
    )
    _add_inspection_commands(command)
    _add_spec_commands(command, common)
    completion = command("completion", "print a shell completion script (bash or zsh)")
    completion.add_argument("shell", choices=SHELLS)
    return parser
