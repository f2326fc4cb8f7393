"""``dpmctl``: the DPM's interfaces from a shell, for operators and scripts.

Exit status: 0 done; 1 the DPM refused the command (``DaqException``) or
failed it, or the watched DAQ ended ``Aborted``; 2 usage error; 3 cannot
reach the server (including a connection lost on the way).  ``--json``
prints machine-readable output instead of text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

from twisted.internet.defer import gatherResults
from twisted.internet.task import react

from dpmd.client._twisted import connect
from dpmd.client.api import DpmClient
from dpmd.client.endpoints import DEFAULT_ENDPOINT, USAGE, TlsEndpoint, UnixEndpoint, parse_endpoint
from dpmd.client.errors import (
    ConnectFailed,
    ConnectionLost,
    DaqError,
    EndpointError,
    ProtocolError,
    RpcError,
)
from dpmd.client.render import active_table, internal_text, status_text, storage_text
from dpmd.client.watch import Watcher, WatchView
from dpmd.model import DaqReply, DaqSubState

OK, FAILED, USAGE_ERROR, CANNOT_CONNECT = 0, 1, 2, 3


class UsageProblem(Exception):
    """A command line that names something unusable, found before connecting."""


@dataclass
class Console:
    """Where a command writes, and how: JSON or text, colour or not."""

    out: TextIO
    err: TextIO
    as_json: bool
    terminal: bool

    def json(self, value: Any) -> None:
        self.out.write(json.dumps(value) + "\n")

    def text(self, text: str) -> None:
        self.out.write(text + "\n")

    def show(self, value: Any, text: str) -> None:
        if self.as_json:
            self.json(value)
        else:
            self.text(text)


def _add_common_options(parser: argparse.ArgumentParser, connect: Any, as_json: Any) -> None:
    parser.add_argument(
        "--connect",
        metavar="ENDPOINT",
        default=connect,
        help=f"server endpoint ({USAGE}); default $DPMCTL_CONNECT or {DEFAULT_ENDPOINT}",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=as_json,
        help="machine-readable output",
    )


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dpmctl",
        description="Talk to a dpmd (Data Product Manager) server.",
        epilog="Exit status: 0 ok, 1 refused by the DPM (DaqException) or failed, "
        "2 usage error, 3 cannot connect.",
    )
    _add_common_options(parser, environ.get("DPMCTL_CONNECT") or DEFAULT_ENDPOINT, False)
    # The same options after the command too; SUPPRESS keeps a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    _add_common_options(common, argparse.SUPPRESS, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text, parents=[common])

    queue = command("queue", "queue a DAQ from a Data Product Specification")
    queue.add_argument("specification", metavar="SPEC.json|-", help="the file, or - for stdin")
    for name, text in [
        ("status", "status of a DAQ"),
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
    demo = command("demo", "merge a small generated data product, end to end")
    demo.add_argument("--dir", metavar="DIR", help="where to write the source files")
    return parser


def read_specification(name: str, stdin: TextIO) -> str:
    if name == "-":
        return stdin.read()
    try:
        with open(name, encoding="utf-8") as stream:
            return stream.read()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageProblem(f"cannot read specification {name}: {error}") from None


def cannot_connect_hint(endpoint: str) -> str:
    """What most likely fixes a failed connection to ``endpoint``."""
    where = parse_endpoint(endpoint)
    hint = (
        "is dpmd running there? Start it with `twistd --nodaemon --pidfile= dpmd`, "
        "or point dpmctl at it with --connect or $DPMCTL_CONNECT"
    )
    if isinstance(where, UnixEndpoint):
        hint += " (the socket is the path given to dpmd's --listen unix:PATH)"
    if isinstance(where, TlsEndpoint):
        hint += "; for TLS also check the host name, trustRoots and the client certificate"
    return hint


@dataclass
class Context:
    """What a command works with."""

    client: DpmClient
    options: argparse.Namespace
    console: Console
    reactor: Any
    specification: str | None


async def run(reactor: Any, options: argparse.Namespace, console: Console, stdin: TextIO) -> int:
    """Carry out one parsed command line; returns the exit status."""
    try:
        # Reading the file first: a mistake in the command line costs no connection.
        specification = (
            read_specification(options.specification, stdin) if options.command == "queue" else None
        )
        client = await connect(options.connect, reactor)
    except (UsageProblem, EndpointError) as error:
        console.err.write(f"dpmctl: {error}\n")
        return USAGE_ERROR
    except ConnectFailed as error:
        console.err.write(f"dpmctl: {error}\n  {cannot_connect_hint(options.connect)}\n")
        return CANNOT_CONNECT
    try:
        return await execute(Context(client, options, console, reactor, specification))
    finally:
        client.close()


async def execute(context: Context) -> int:
    """Run the command on a connected client; failures become messages and exit statuses."""
    console = context.console
    try:
        return await COMMANDS[context.options.command](context)
    except UsageProblem as error:
        console.err.write(f"dpmctl: {error}\n")
        return USAGE_ERROR
    except DaqError as error:
        console.err.write(f"dpmctl: {error.message}\n")
        return FAILED
    except (RpcError, ProtocolError) as error:
        console.err.write(f"dpmctl: the server failed the command: {error}\n")
        return FAILED
    except ConnectionLost as error:
        console.err.write(f"dpmctl: {error}\n")
        return CANNOT_CONNECT


def _partly_failed(reply: DaqReply) -> str:
    return " (the command partly failed: see `dpmctl status`)" if reply.error else ""


async def _queue(context: Context) -> int:
    reply = await context.client.queue_daq(context.specification)
    context.console.show(reply.to_json(), f"queued {reply.id}{_partly_failed(reply)}")
    return OK


async def _status(context: Context) -> int:
    status = await context.client.get_daq_status(context.options.id)
    context.console.show(status.to_json(), status_text(status, context.console.terminal))
    return OK


async def _internal(context: Context) -> int:
    internal = await context.client.get_internal_daq_status(context.options.id)
    text = internal_text(internal.status, internal.detail, context.console.terminal)
    context.console.show(internal.to_json(), text)
    return OK


async def _active(context: Context) -> int:
    statuses = await context.client.get_active_daqs()
    if context.console.as_json:
        context.console.json([status.to_json() for status in statuses])
        return OK
    internals = await gatherResults(
        [context.client.get_internal_daq_status(status.id) for status in statuses],
        consumeErrors=True,
    )
    rows = [(status, internal.detail) for status, internal in zip(statuses, internals, strict=True)]
    context.console.text(active_table(rows, context.reactor.seconds()))
    return OK


async def _abort(context: Context) -> int:
    reply = await context.client.abort_daq(context.options.id)
    context.console.show(reply.to_json(), f"aborted {reply.id}{_partly_failed(reply)}")
    return OK


async def _retry(context: Context) -> int:
    await context.client.retry_merge_daq(context.options.id)
    daq_id = context.options.id
    context.console.show({"id": daq_id}, f"retrying the merge of {daq_id}")
    return OK


async def _storage(context: Context) -> int:
    status = await context.client.query_storage_status()
    context.console.show(status.to_json(), storage_text(status))
    return OK


async def _exit(context: Context) -> int:
    goodbye = await context.client.exit()
    context.console.show({"message": goodbye}, goodbye)
    return OK


async def _watch(context: Context) -> int:
    console = context.console
    view = WatchView(console.out, console.as_json, console.terminal)
    final = await Watcher(context.client, context.reactor, view, context.options.id).run()
    return FAILED if final.substate is DaqSubState.Aborted else OK


async def _demo(context: Context) -> int:
    from dpmd.client import demo  # astropy is slow to import: only for the demo

    try:
        directory = demo.make_directory(context.options.dir)
    except OSError as error:
        raise UsageProblem(f"cannot use --dir {context.options.dir}: {error}") from None
    return await demo.run_demo(context, directory)


COMMANDS: dict[str, Callable[[Context], Awaitable[int]]] = {
    "queue": _queue,
    "status": _status,
    "internal": _internal,
    "active": _active,
    "abort": _abort,
    "retry": _retry,
    "storage": _storage,
    "watch": _watch,
    "exit": _exit,
    "demo": _demo,
}


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``dpmctl`` console script."""
    options = build_parser(os.environ).parse_args(argv)
    console = Console(sys.stdout, sys.stderr, options.json, sys.stdout.isatty())

    async def command(reactor: Any) -> None:
        status = await run(reactor, options, console, sys.stdin)
        if status:
            raise SystemExit(status)

    react(command)
