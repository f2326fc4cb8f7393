"""Command line of dpmd-merge: arguments, logging, signals and exit codes.

    dpmd-merge [--root DIR] [--resolve JSON-FILE] [-o OUT] [--dry-run] [--json]
               [--provenance FILE] [--date ISO] [--log-level L] [--version] SPEC.json

Exit codes: 0 success, 1 other failure, 2 bad command line, 3 invalid
specification, 4 source missing/unreadable/not FITS, 5 output not writable.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

import dpmd
from dpmd.spec import SpecificationError, parse_specification

from .errors import EXIT_FAILURE, EXIT_OK, MergeError, SpecError, UsageError
from .plan import Plan, build_plan, resolve_sources
from .provenance import provenance, to_json, write_provenance
from .report import Reporter
from .space import check_space
from .writer import Rollback, recover, write_product

log = logging.getLogger("dpmd.merge")
#: The server's level names (dpmd.config.LOG_LEVELS; a test keeps them equal). The
#: merger does not import the server's configuration: it runs without the server.
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Terminated(BaseException):
    """A termination signal arrived; raised so that clean-up code runs."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def fits_date(text: str) -> str:
    """--date: any ISO 8601 time, written as UTC `YYYY-MM-DDThh:mm:ss.sss`."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date and time: {text!r}") from None
    return _format_date(moment)


def _format_date(moment: datetime.datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds")


def _level(text: str) -> int:
    """A level name as the server takes it: any case, `warning` for `warn`."""
    name = text.lower()
    try:
        return LOG_LEVELS["warn" if name == "warning" else name]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown level {text!r} (use one of {', '.join(LOG_LEVELS)})"
        ) from None


class _Parser(argparse.ArgumentParser):
    """Reports a bad command line as a UsageError, so that it ends like every
    other failure (exit 2, and a JSON `error` line under --json)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _wants_json(argv: Sequence[str]) -> bool:
    """Whether --json was asked for (as argparse would read it: abbreviated too),
    for a command line that could not be parsed."""
    for token in argv:
        if token == "--":
            return False
        if len(token) > 2 and "--json".startswith(token.partition("=")[0]):
            return True
    return False


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dpmd-merge",
        description="Merge the sources of a Data Product Specification into one FITS file.",
        epilog="Exit codes: 0 success, 1 other failure, 2 bad command line, 3 invalid "
        "specification, 4 source missing/unreadable/not FITS, 5 output cannot be written.",
    )
    parser.add_argument("spec", metavar="SPEC.json", help="the Data Product Specification")
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="directory for relative source locations and the default output "
        "(default: the directory of SPEC.json)",
    )
    parser.add_argument(
        "--resolve",
        metavar="JSON-FILE",
        help='local paths of file sources: {"sourceName": "/local/path", ...}',
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write the product here (default: ROOT/{filePrefix}{fileId}.fits; "
        "for an in-place target, default is to update the target itself)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and print the planned product; write nothing",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line on stdout (progress, heartbeat, alert, "
        "provenance, result, error)",
    )
    parser.add_argument(
        "--provenance",
        metavar="FILE",
        help="also write where each primary-header card came from, as JSON, to FILE",
    )
    parser.add_argument(
        "--date",
        type=fits_date,
        metavar="ISO",
        help="value of DATE (default: now); pin it for reproducible output",
    )
    parser.add_argument(
        "--log-level",
        type=_level,
        default=logging.INFO,
        metavar="L",
        help="lowest level logged on stderr: debug, info (default), warn, error or critical",
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="print the version of dpmd-merge and exit"
    )
    return parser


class _Version(argparse.Action):
    """--version, reading the package metadata only when asked (it costs start-up)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        sys.stdout.write(f"{parser.prog} {dpmd.__version__}\n")
        parser.exit()


def _load_resolve(path: str | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as stream:
            mapping = json.load(stream)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read --resolve file {path}: {exc}") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(value, str) and value for value in mapping.values()
    ):
        raise UsageError(f"--resolve file {path} must hold a JSON object of sourceName: path")
    return mapping


@contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn TERM/INT/HUP into an exception so temporary state is cleaned up."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = {signum: signal.signal(signum, handler) for signum in _HANDLED_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _check_provenance_path(path: str, plan: Plan) -> str:
    """--provenance must name a new or plain file in an existing directory, and
    neither the product nor a source."""
    final = os.path.abspath(path)
    if not os.path.isdir(os.path.dirname(final)):
        raise UsageError(f"--provenance {path}: directory {os.path.dirname(final)} does not exist")
    if os.path.isdir(final):
        raise UsageError(f"--provenance {path} is a directory")
    for name, other in (("the product", plan.output), *plan.paths.items()):
        if final == other or _same_file(final, other):
            what = name if other == plan.output else f"the file of source {name!r}"
            raise UsageError(f"--provenance {path} is {what}; refusing to overwrite it")
    return final


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False  # one of them does not exist (yet)


def _report_provenance(
    args: argparse.Namespace, reporter: Reporter, plan: Plan, records: Sequence[str] | None
) -> None:
    """The provenance line (with --json) and file (with --provenance); computed only then."""
    if not (args.json or args.provenance):
        return
    document = to_json(provenance(plan, records))
    if args.provenance:
        write_provenance(args.provenance, document)
    reporter.provenance(document)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    try:
        with open(args.spec, "rb") as stream:
            text = stream.read()
    except OSError as exc:
        raise UsageError(f"cannot read specification {args.spec}: {exc.strerror}") from None
    try:
        spec = parse_specification(text, reporter.beat)
    except SpecificationError as exc:
        raise SpecError("invalid specification:\n  " + "\n  ".join(exc.errors)) from None
    root = os.path.abspath(args.root or os.path.dirname(os.path.abspath(args.spec)))
    if not os.path.isdir(root):
        raise UsageError(f"--root {root} is not a directory")
    paths = resolve_sources(spec, _load_resolve(args.resolve), root)
    if spec.target_source is not None:
        target_path = paths[spec.target_source.source_name]
        if args.dry_run and Rollback(target_path).pending():
            log.warning(
                "%s has an interrupted in-place merge; the next merge rolls it back", target_path
            )
        elif not args.dry_run and recover(target_path):
            log.warning("rolled back an interrupted in-place merge of %s", target_path)
    date = args.date or _format_date(datetime.datetime.now(datetime.UTC))
    output = os.path.abspath(args.output) if args.output else None
    plan = build_plan(spec, paths, output, root, date, reporter.beat)
    if args.provenance:
        args.provenance = _check_provenance_path(args.provenance, plan)
    log.info("merging %s into %s (%s, %d bytes)", spec.id, plan.output, plan.mode.value, plan.size)
    # The plan (every card of every header) lives until the end: keep the cyclic
    # garbage collector from walking it again and again while the provenance of
    # a big header creates its many small objects (measured: a third of its cost).
    gc.freeze()
    try:
        return _carry_out(args, reporter, plan)
    finally:
        gc.unfreeze()


def _carry_out(args: argparse.Namespace, reporter: Reporter, plan: Plan) -> int:
    """Print the plan (--dry-run) or write the product; then the provenance."""
    if args.dry_run:
        for alert in plan.alerts:
            reporter.alert(alert)
        reporter.plan(plan)
        _report_provenance(args, reporter, plan, None)
        check_space(plan)
        return EXIT_OK
    check_space(plan)
    written = write_product(plan, reporter.progress)
    for alert in plan.alerts:
        reporter.alert(alert)
    _report_provenance(args, reporter, plan, written.records)
    reporter.result(plan.output, written.size)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("dpmd-merge: %(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        log.error("%s", exc)
        Reporter(_wants_json(argv)).error(exc.exit_code, str(exc))
        return exc.exit_code
    log.setLevel(args.log_level)
    reporter = Reporter(args.json)
    try:
        with _signals_raise():
            return run(args, reporter)
    except MergeError as exc:
        log.error("%s", exc)
        reporter.error(exc.exit_code, str(exc))
        return exc.exit_code
    except Terminated as exc:
        log.error("%s; nothing was left half-written", exc)
        reporter.error(EXIT_FAILURE, str(exc))
        signal.signal(exc.signum, signal.SIG_DFL)
        os.kill(os.getpid(), exc.signum)
        return EXIT_FAILURE
    except Exception as exc:
        log.exception("merge failed")
        reporter.error(EXIT_FAILURE, f"{type(exc).__name__}: {exc}")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
