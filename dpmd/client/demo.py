"""``dpmctl demo``: a real data product from generated sources, start to finish.

It writes what an instrument would leave behind after an exposure: a
detector file (an empty primary HDU with detector keywords and one image
extension per chip) and a focal-plane file (``INS`` keywords in its primary
header and a binary table of device positions).  The specification adds the
observation keywords OCM would send and keyword rules that take only the
focal plane's ``INS`` keywords, except its raw temperature sensor.  The
demo queues it, follows it to ``Completed`` and shows the product.
"""

from __future__ import annotations

import datetime
import json
import math
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError

from dpmd.client.console import Problem, UsageProblem
from dpmd.client.errors import DaqError, RpcError
from dpmd.client.fitsinfo import describe
from dpmd.client.fitswriter import Column, image_hdu, primary_hdu, table_hdu, write_fits
from dpmd.client.render import alert_hint
from dpmd.client.units import human_size
from dpmd.client.watch import SilentView, Watcher, WatchView
from dpmd.model import DaqAlert, DaqStatus, DaqSubState

if TYPE_CHECKING:
    from dpmd.client.cli import Context

SHOWN_KEYWORDS = (
    "ORIGIN",
    "INSTRUME",
    "OBJECT",
    "RA",
    "DEC",
    "DATE-OBS",
    "ARCFILE",
    "HIERARCH ESO OBS TPLNO",
    "HIERARCH ESO DET DIT",
    "HIERARCH ESO DET NDIT",
    "HIERARCH ESO INS FILT1 NAME",
    "HIERARCH ESO INS MODE",
)
"""Keywords of the product's primary header that the summary shows, when present."""


def daq_id_for(now: float, prefix: str = "DEMO") -> str:
    """``PREFIX.<UTC time to the millisecond>``: unique per run, in the ids' character set."""
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    return f"{prefix}." + moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _star_field(rng: random.Random, width: int, height: int, stars: int) -> list[float]:
    """Sky background with noise and a few Gaussian stars: a plausible raw frame."""
    image = [rng.gauss(1000.0, 12.0) for _ in range(width * height)]
    for _ in range(stars):
        y, x = rng.uniform(4, height - 4), rng.uniform(4, width - 4)
        flux, sigma = rng.uniform(2e3, 4e4), rng.uniform(1.2, 2.5)
        reach = int(5 * sigma) + 1  # farther out a star adds nothing a float32 can hold
        for row in range(max(0, int(y) - reach), min(height, int(y) + reach + 1)):
            for column in range(max(0, int(x) - reach), min(width, int(x) + reach + 1)):
                distance = (row - y) ** 2 + (column - x) ** 2
                image[row * width + column] += flux * math.exp(-distance / (2 * sigma**2))
    return image


def write_detector_file(path: Path, date_obs: str) -> None:
    rng = random.Random(20240201)
    primary = primary_hdu(
        [
            ("INSTRUME", "DEMO", "Instrument used"),
            ("DATE-OBS", date_obs, "Start of the exposure"),
            ("HIERARCH ESO DET DIT", 10.0, "[s] Detector integration time"),
            ("HIERARCH ESO DET NDIT", 3, "Number of integrations"),
            ("HIERARCH ESO DET READ MODE", "SLOW", "Readout mode"),
        ]
    )
    chips = [
        image_hdu(
            f"CHIP{number}",
            128,
            128,
            _star_field(rng, 128, 128, 6),
            [
                ("HIERARCH ESO DET CHIP ID", f"DEMO-CCD-{number}", "Chip identifier"),
                ("BUNIT", "adu", "Pixel unit"),
            ],
        )
        for number in (1, 2)
    ]
    write_fits(path, [primary, *chips])


def write_focal_plane_file(path: Path, date_obs: str) -> None:
    primary = primary_hdu(
        [
            ("DATE-OBS", date_obs, "Start of the exposure"),
            ("HIERARCH ESO INS MODE", "IMAGING", "Instrument mode"),
            ("HIERARCH ESO INS FILT1 ID", "FILT-4", "Filter wheel position id"),
            ("HIERARCH ESO INS FILT1 NAME", "Ks", "Filter name"),
            ("HIERARCH ESO INS OPTI1 NAME", "WIDE", "Camera optics"),
            ("HIERARCH ESO INS TEMP1 VAL", 71.9, "[K] Raw sensor: not for the archive"),
            ("HIERARCH ESO INS TEMP2 VAL", 72.4, "[K] Detector housing"),
            ("HIERARCH ESO TEL FOCU VALUE", 0.25, "[mm] Not the focal plane's"),
        ]
    )
    table = table_hdu(
        "FCS_EVENTS",
        [
            Column("TIME", "D", [0.0, 7.5, 15.0, 22.5, 30.0], unit="s"),
            Column("DEVICE", "8A", ["FILT1", "FILT1", "OPTI1", "FILT1", "OPTI1"]),
            Column("POSITION", "E", [0.0, 45.0, 12.5, 45.0, 12.5], unit="deg"),
        ],
        [],
    )
    write_fits(path, [primary, table])


def specification(daq_id: str, detector: Path, focal_plane: Path) -> dict[str, Any]:
    """The Data Product Specification OCM would send for these two files."""
    return {
        "id": daq_id,
        "sources": [
            {
                "type": "fitsKeywords",
                "sourceName": "ocm",
                "keywords": [
                    {"type": "valueKeyword", "name": "ORIGIN", "value": "ESO-PARANAL"},
                    {"type": "valueKeyword", "name": "OBJECT", "value": "NGC 1365"},
                    {
                        "type": "valueKeyword",
                        "name": "RA",
                        "value": 53.401917,
                        "comment": "[deg] 03:33:36.4 RA (J2000) pointing",
                    },
                    {
                        "type": "valueKeyword",
                        "name": "DEC",
                        "value": -36.140528,
                        "comment": "[deg] -36:08:25.9 DEC (J2000) pointing",
                    },
                    {"type": "esoKeyword", "name": "OBS TPLNO", "value": 1},
                    {"type": "literalKeyword", "value": "HISTORY Merged by dpmctl demo"},
                ],
            },
            {"type": "fitsFile", "sourceName": "dcs", "location": str(detector)},
            {
                "type": "fitsFile",
                "sourceName": "fcs",
                "location": str(focal_plane),
                "keywordRules": [
                    {"type": "filter", "selectionPatterns": ["+e INS *", "-e INS TEMP1 *"]}
                ],
            },
        ],
        "target": {"fileId": daq_id},
    }


def prepare_sources(directory: Path, daq_id: str) -> dict[str, Any]:
    """Write both source files and ``spec.json`` under ``directory``; the specification."""
    date_obs = daq_id.removeprefix("DEMO.")
    detector = directory / "dcs_0001.fits"
    focal_plane = directory / "fcs_0001.fits"
    write_detector_file(detector, date_obs)
    write_focal_plane_file(focal_plane, date_obs)
    spec = specification(daq_id, detector, focal_plane)
    (directory / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    return spec


def summary(path: str) -> dict[str, Any]:
    """The product's HDUs and a few primary keywords, as JSON-ready data."""
    hdus, keywords = describe(path)
    return {
        "hdus": [hdu.to_json() for hdu in hdus],
        "keywords": {name: keywords[name] for name in SHOWN_KEYWORDS if name in keywords},
        "size": Path(path).stat().st_size,
    }


def summary_text(product: str, facts: dict[str, Any]) -> str:
    lines = [f"product: {product}", f"size:    {human_size(facts['size'])}", "HDUs:"]
    for hdu in facts["hdus"]:
        if hdu["shape"]:
            extent = " x ".join(str(n) for n in reversed(hdu["shape"]))
        elif hdu["rows"] is not None:
            extent = f"{hdu['rows']} rows"
        else:
            extent = "header only"
        lines.append(f"  {hdu['index']}  {hdu['name']:<10}  {hdu['type']:<12}  {extent}")
    lines.append("keywords:")
    width = max((len(name) for name in facts["keywords"]), default=0)
    lines += [f"  {name:<{width}} = {value!r}" for name, value in facts["keywords"].items()]
    return "\n".join(lines)


def make_directory(given: str | None) -> Path:
    """``--dir``, created if needed, or a new temporary directory."""
    if given is None:
        return Path(tempfile.mkdtemp(prefix="dpmctl-demo-"))
    directory = Path(given).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _alert_line(alert: DaqAlert) -> str:
    hint = alert_hint(alert)
    return f"\n  {alert.severity.value} {alert.category}: {alert.description}" + (
        f" ({hint})" if hint else ""
    )


def _failure_text(status: DaqStatus) -> str:
    alerts = "".join(_alert_line(alert) for alert in status.alerts)
    return (
        f"demo DAQ {status.id} stopped in {status.substate.value}"
        f"{': ' + status.message if status.message else ''}{alerts}"
    )


def _failure_hint(status: DaqStatus) -> str:
    return (
        f"details: dpmctl internal {status.id}\n"
        f"  then: dpmctl retry {status.id}, or dpmctl abort {status.id}"
    )


@dataclass
class DemoRun:
    """How far one demo got: whether the server may still read its sources."""

    directory: Path
    daq_id: str
    queueing: bool = False
    """``QueueDaq`` was sent and not refused: the server may hold the DAQ."""
    final: bool = False

    @property
    def sources_needed(self) -> bool:
        """A DAQ that is queued and not final reads its sources where they are."""
        return self.queueing and not self.final


async def run_demo(context: Context) -> int:
    """Make the sources, queue the demo DAQ, follow it, show the product; the exit status.

    A temporary folder (no ``--dir``, no ``--keep``) is removed at the end,
    unless the DAQ may still need its sources: it waits for a retry, or the
    demo was interrupted while it ran.  ``--dir`` may name the folder of an
    earlier run: its files are replaced.
    """
    options = context.options
    try:
        directory = make_directory(options.dir)
    except OSError as error:
        raise UsageProblem(f"cannot use --dir {options.dir}: {error}") from None
    demo = DemoRun(directory, daq_id_for(context.reactor.seconds()))
    try:
        return await _queue_and_follow(context, demo)
    except CancelledError:
        if demo.queueing:
            context.console.err.write(
                f"dpmctl: interrupted; DAQ {demo.daq_id} goes on in the server"
                f" (dpmctl watch {demo.daq_id})\n"
            )
        raise
    finally:
        if options.dir is None and not options.keep:
            if demo.sources_needed:
                context.console.err.write(
                    f"dpmctl: the sources stay in {directory}: DAQ {demo.daq_id} still needs them\n"
                )
            else:
                shutil.rmtree(directory, ignore_errors=True)


async def _queue_and_follow(context: Context, demo: DemoRun) -> int:
    console = context.console
    spec = prepare_sources(demo.directory, demo.daq_id)
    view = SilentView() if console.as_json else WatchView(console)
    watcher = Watcher(context.client, context.reactor, view, demo.daq_id, stop_on_error=True)
    if not console.as_json:
        console.text(f"sources: {demo.directory}\nqueueing {demo.daq_id}")
    try:
        await watcher.subscribe()  # before queueing, so that every stage is seen
        demo.queueing = True  # from here on the server may hold it
        try:
            await context.client.queue_daq(json.dumps(spec))
        except (DaqError, RpcError):
            demo.queueing = False  # refused: it holds nothing
            raise
        final = await watcher.follow()
    finally:
        view.close()
    demo.final = final.substate.is_final
    if final.substate is not DaqSubState.Completed:
        console.fail(
            Problem("DemoStopped", _failure_text(final), data=final.to_json(),
                    hint=_failure_hint(final))
        )  # fmt: skip
        return 1
    result = {"id": demo.daq_id, "product": final.result, "sources": str(demo.directory)}
    if not Path(final.result).is_file():  # a server on another machine
        console.show(result, f"product: {final.result}")
        return 0
    facts = summary(final.result)
    console.show({**result, **facts}, summary_text(final.result, facts))
    return 0
