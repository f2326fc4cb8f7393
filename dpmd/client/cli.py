"""``dpmctl``: the DPM's interfaces from a shell, for operators and scripts.

Exit status: 0 done; 1 the DPM refused the command (``DaqException``) or
failed it, or the watched DAQ ended ``Aborted``; 2 usage error; 3 cannot
reach the server (including a connection lost on the way); 130 interrupted
(Ctrl-C, SIGINT); 143 stopped by SIGTERM.  ``--json`` prints machine-readable
output instead of text, and failures as one JSON object too.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

import shtab
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    FirstError,
    ensureDeferred,
    gatherResults,
)
from twisted.internet.task import react

from dpmd.client import demo, examine, specification
from dpmd.client._twisted import connect
from dpmd.client.api import DpmClient
from dpmd.client.console import (
    CANNOT_CONNECT,
    FAILED,
    INTERRUPTED,
    OK,
    TERMINATED,
    USAGE_ERROR,
    Console,
    Problem,
    UsageProblem,
    wants_colour,
)
from dpmd.client.endpoints import TlsEndpoint, UnixEndpoint, parse_endpoint
from dpmd.client.errors import (
    ConnectFailed,
    ConnectionLost,
    DaqError,
    EndpointError,
    ProtocolError,
    RpcError,
)
from dpmd.client.internal import internal_view
from dpmd.client.options import build_parser
from dpmd.client.render import active_view, status_view, storage_view
from dpmd.client.watch import Watcher, WatchView
from dpmd.model import DaqReply, DaqSubState

NEEDS_SPECIFICATION = frozenset({"queue", "check"})


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


def problem_of(error: Exception, endpoint: str) -> tuple[Problem, int]:
    """The report and exit status of a failed command."""
    if isinstance(error, UsageProblem):
        return Problem("UsageError", str(error)), USAGE_ERROR
    if isinstance(error, EndpointError):
        return Problem("UsageError", str(error)), USAGE_ERROR
    if isinstance(error, DaqError):
        data = {"exception": "DaqException", "id": error.id, "message": error.message}
        return Problem("DaqException", error.message, -32000, data), FAILED
    if isinstance(error, RpcError):
        message = f"the server failed the command: {error}"
        return Problem("RpcError", message, error.code, error.data), FAILED
    if isinstance(error, ProtocolError):
        return Problem("ProtocolError", f"the server failed the command: {error}"), FAILED
    if isinstance(error, ConnectFailed):
        hint = cannot_connect_hint(endpoint)
        return Problem("ConnectFailed", str(error), hint=hint), CANNOT_CONNECT
    if isinstance(error, ConnectionLost):
        return Problem("ConnectionLost", str(error)), CANNOT_CONNECT
    raise error


@dataclass
class Context:
    """What a command works with."""

    client: DpmClient
    options: argparse.Namespace
    console: Console
    reactor: Any
    specification: str | None


STOPPING_SIGNALS: dict[int, int] = {signal.SIGINT: INTERRUPTED, signal.SIGTERM: TERMINATED}
"""The signals that end a command quietly, and the exit status each gives."""


async def run(
    reactor: Any,
    options: argparse.Namespace,
    console: Console,
    stdin: TextIO,
    interrupted: Deferred[int] | None = None,
) -> int:
    """Carry out one parsed command line; returns the exit status.

    When ``interrupted`` fires with a signal's number (SIGINT: Ctrl-C;
    SIGTERM: a supervisor or ``timeout``), the command is cancelled wherever
    it waits and the status is that of ``STOPPING_SIGNALS``, with nothing
    printed: whoever sent it asked for the command to end, and the server
    did nothing wrong.
    """
    if options.command in OFFLINE:
        return OFFLINE[options.command](options, console)
    work = ensureDeferred(_connect_and_execute(reactor, options, console, stdin))
    status = INTERRUPTED

    def stop(signum: int) -> None:
        nonlocal status
        status = STOPPING_SIGNALS.get(signum, INTERRUPTED)
        work.cancel()

    if interrupted is not None:
        interrupted.addCallback(stop)
    try:
        return await work
    except CancelledError:
        return status


async def _connect_and_execute(
    reactor: Any, options: argparse.Namespace, console: Console, stdin: TextIO
) -> int:
    try:
        # Reading the file first: a mistake in the command line costs no connection.
        examine.check_arguments(options)
        specification = (
            read_specification(options.specification, stdin)
            if options.command in NEEDS_SPECIFICATION
            else None
        )
        client = await connect(options.connect, reactor)
    except (UsageProblem, EndpointError, ConnectFailed) as error:
        problem, status = problem_of(error, options.connect)
        console.fail(problem)
        return status
    try:
        return await execute(Context(client, options, console, reactor, specification))
    finally:
        client.close()


async def execute(context: Context) -> int:
    """Run the command on a connected client; failures become reports and exit statuses."""
    try:
        return await COMMANDS[context.options.command](context)
    except (UsageProblem, DaqError, RpcError, ProtocolError, ConnectionLost) as error:
        problem, status = problem_of(error, context.client.endpoint)
        context.console.fail(problem)
        return status


def _partly_failed(reply: DaqReply) -> str:
    return " (the command partly failed: see `dpmctl status`)" if reply.error else ""


async def _queue(context: Context) -> int:
    assert context.specification is not None  # read before connecting
    reply = await context.client.queue_daq(context.specification)
    context.console.show(reply.to_json(), f"queued {reply.id}{_partly_failed(reply)}")
    return OK


async def _status(context: Context) -> int:
    try:
        status = await context.client.get_daq_status(context.options.id)
        note = ""
    except DaqError as refusal:
        # A server from before archived DAQs had a status refuses them; the internal
        # status has the final one from its store.
        if "archived" not in refusal.message:
            raise
        status = (await context.client.get_internal_daq_status(context.options.id)).status
        note = "archived"
    context.console.show(status.to_json(), status_view(status, note))
    return OK


async def _internal(context: Context) -> int:
    internal = await context.client.get_internal_daq_status(context.options.id)
    context.console.show(internal.to_json(), internal_view(internal.status, internal.detail))
    return OK


async def _active(context: Context) -> int:
    statuses = await context.client.get_active_daqs()
    if context.console.as_json:
        context.console.json([status.to_json() for status in statuses])
        return OK
    try:
        internals = await gatherResults(
            [context.client.get_internal_daq_status(status.id) for status in statuses],
            consumeErrors=True,
        )
    except FirstError as error:  # the first failed question, reported as any other
        raise error.subFailure.value from None
    rows = [(status, internal.detail) for status, internal in zip(statuses, internals, strict=True)]
    context.console.print(active_view(rows, context.reactor.seconds()))
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
    context.console.show(status.to_json(), storage_view(status))
    return OK


async def _exit(context: Context) -> int:
    goodbye = await context.client.exit()
    context.console.show({"message": goodbye}, goodbye)
    return OK


async def _watch(context: Context) -> int:
    view = WatchView(context.console)
    daq_id = context.options.id
    watcher = Watcher(context.client, context.reactor, view, daq_id)
    try:
        await watcher.subscribe()
        # An idle watch prints nothing else: this line says it works, on what, and where.
        what = "all DAQs" if daq_id is None else f"DAQ {daq_id}"
        context.console.note(f"watching {what} at {context.client.endpoint}; Ctrl-C to stop")
        final = await watcher.follow()
    finally:
        view.close()
    return FAILED if final.substate is DaqSubState.Aborted else OK


async def _demo(context: Context) -> int:
    return await demo.run_demo(context)


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
    "provenance": examine.provenance_command,
    "timeline": examine.timeline_command,
    "check": examine.check_command,
    "fsck": examine.fsck_command,
}


def _completion(options: argparse.Namespace, console: Console) -> int:
    console.text(shtab.complete(build_parser({}), options.shell).rstrip("\n"))
    return OK


OFFLINE: dict[str, Callable[[argparse.Namespace, Console], int]] = {
    "completion": _completion,
    "checksum": examine.checksum_command,
    "spec": specification.spec_command,
}
"""Commands that need no server: they run before (and without) the reactor."""


def make_console(
    options: argparse.Namespace, out: TextIO, err: TextIO, environ: Mapping[str, str]
) -> Console:
    terminal = out.isatty()
    colour = wants_colour(options.color, terminal, environ)
    return Console(out, err, options.json, terminal, colour)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``dpmctl`` console script."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        options = build_parser(os.environ).parse_args(arguments)
    except UsageProblem as problem:
        sys.stderr.write(problem.usage)
        console = Console(sys.stdout, sys.stderr, "--json" in arguments, False)
        console.fail(Problem("UsageError", str(problem)))
        raise SystemExit(USAGE_ERROR) from None
    console = make_console(options, sys.stdout, sys.stderr, os.environ)
    if options.command in OFFLINE:
        try:
            status = OFFLINE[options.command](options, console)
        except KeyboardInterrupt:
            status = INTERRUPTED
        raise SystemExit(status)

    async def command(reactor: Any) -> None:
        interrupted: Deferred[int] = Deferred()

        def stop(signum: int) -> None:
            if not interrupted.called:
                interrupted.callback(signum)

        def on_signal(signum: int, frame: Any) -> None:
            signal.signal(signum, signal.SIG_DFL)  # a second one (Ctrl-C again) ends it at once
            reactor.callFromThread(stop, signum)

        def take_signals() -> None:
            for signum in STOPPING_SIGNALS:
                signal.signal(signum, on_signal)

        # Twisted's own handlers stop the reactor, which would drop the connection
        # and be reported as a lost connection (status 3), as if the server had failed.
        # The reactor installs them when it starts (SIGTERM's over any other, SIGINT's
        # only over Python's default): take both now and again once it runs.
        take_signals()
        reactor.callWhenRunning(take_signals)
        status = await run(reactor, options, console, sys.stdin, interrupted)
        if status:
            raise SystemExit(status)

    react(command)
