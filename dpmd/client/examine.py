"""``dpmctl``'s commands that look into what dpmd did and will do.

``provenance`` (where each header card came from), ``timeline`` (where the
time went), ``check`` (a dry run of a specification), ``fsck`` (the
workspace against the store) and ``checksum`` (what a release manifest
records of a file; it needs no server).  Each prints for people, or one
JSON value with ``--json``; the exit status is 1 when the answer is bad
news (a problem left, a checksum that does not verify), as ``fsck(8)`` and
``b2sum --check`` do.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from dpmd.client.console import FAILED, OK, Console, Problem, UsageProblem
from dpmd.client.provenance import cards_of, keyword_view, provenance_table
from dpmd.client.reports import audit_view, check_view, checksum_view, verifies
from dpmd.client.timeline import timeline_json, timeline_view
from dpmd.client.units import utc_time
from dpmd.fitscheck import FitsFormatError, describe_fits

if TYPE_CHECKING:
    from dpmd.client.cli import Context


def check_arguments(options: argparse.Namespace) -> None:
    """What the parser cannot see alone, found before connecting."""
    timeline = options.command == "timeline" and None not in (options.since, options.until)
    if timeline and options.since > options.until:
        raise UsageProblem(
            f"--since {utc_time(options.since)} is after --until {utc_time(options.until)}"
        )


async def provenance_command(context: Context) -> int:
    origins = await context.client.get_daq_provenance(context.options.id)
    keyword = context.options.keyword
    if keyword is None:
        context.console.show([origin.to_json() for origin in origins], provenance_table(origins))
        return OK
    cards = cards_of(origins, keyword)
    if not cards:
        message = (
            f"the product of {context.options.id} has no card {keyword!r} in its primary header"
        )
        context.console.fail(Problem("NoSuchKeyword", message))
        return FAILED
    context.console.show([card.to_json() for card in cards], keyword_view(cards))
    return OK


async def timeline_command(context: Context) -> int:
    options = context.options
    timeline = await context.client.get_timeline(options.since, options.until, options.limit)
    view = timeline_view(timeline, options.since, options.until, options.limit)
    context.console.show(timeline_json(timeline), view)
    return OK


async def check_command(context: Context) -> int:
    assert context.specification is not None  # read before connecting
    check = await context.client.check_daq(context.specification)
    context.console.show(check.to_json(), check_view(check))
    return OK if check.ok else FAILED


async def fsck_command(context: Context) -> int:
    audit = await context.client.audit_workspace(context.options.repair)
    context.console.show(audit.to_json(), audit_view(audit, context.options.repair))
    return FAILED if audit.unrepaired else OK


def _complaints(path: str, facts: dict[str, object]) -> list[str]:
    hdus = facts["hdus"]
    assert isinstance(hdus, list)
    return [
        f"{path}: HDU {hdu['index']}: {keyword} does not verify"
        for hdu in hdus
        for keyword, verdict in (("CHECKSUM", "checksum_ok"), ("DATASUM", "datasum_ok"))
        if hdu[verdict] is False
    ]


def checksum_command(options: argparse.Namespace, console: Console) -> int:
    """Each file in turn (blocking: no server, no reactor work waits on it)."""
    results: list[dict[str, object]] = []
    status = OK
    for path in options.files:
        try:
            facts = describe_fits(path)
        except OSError as error:
            complaints = [f"{path}: {error.strerror or error}"]
            results.append({"path": path, "error": complaints[0]})
        except FitsFormatError as error:
            complaints = [f"{path}: not a FITS file: {error}"]
            results.append({"path": path, "error": complaints[0]})
        else:
            results.append({"path": path, **facts})
            complaints = [] if verifies(facts) else _complaints(path, facts)
            if not console.as_json:
                console.print(checksum_view(path, facts))
        for complaint in complaints:
            console.err.write(f"dpmctl: {complaint}\n")
            console.err.flush()
            status = FAILED
    if console.as_json:
        console.json(results)
    return status
