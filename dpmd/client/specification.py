"""``dpmctl spec``: a specification to start from, and the schema to check one against.

``spec new FILE.fits...`` prints a Data Product Specification that merges
the files given, in that order, into one product: one ``fitsFile`` source
per file (highest priority first), each named after its file, behind a
``fitsKeywords`` source where the observation's own keywords go.  Writing
one by hand means learning the schema before seeing a product; starting
from one that ``dpmctl check`` accepts, a user changes one thing at a time.

It needs no server.  The files are looked at as far as the server's
collection will look at them (there, a regular file, readable, beginning
as FITS does), so that a misspelt name is one line now rather than an
alert once the DAQ is queued; their paths are made absolute, because a
relative location means "relative to the server's dataroot", which is
seldom where the user stands.  What is printed has passed the parser the
server uses.

``spec schema`` prints the JSON Schema shipped in the package, the one the
server validates with, for editors and other tools.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

from dpmd.client.console import OK, USAGE_ERROR, Console, Problem, UsageProblem
from dpmd.client.demo import daq_id_for
from dpmd.locations import receiver_problem
from dpmd.spec import SpecificationError, load_schema, parse_specification

FITS_SIGNATURE = b"SIMPLE  ="
"""How a FITS file begins: what the server's collection checks (``dpmd.stages.collect``)."""
KEYWORDS_SOURCE = "keywords"
"""The name of the keyword source ``spec new`` writes; a file's name never takes it."""
ID_PREFIX = "DAQ"
"""A default id is ``DAQ.`` and the UTC time to the millisecond: unique per run."""
_FITS_SUFFIX = re.compile(r"\.(?:fits|fit|fts)(?:\.fz)?\Z", re.IGNORECASE)
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_.+-]")


def packaged_schema() -> str:
    """The schema file as installed with the package (found as a package resource)."""
    return (resources.files("dpmd.spec") / "schema" / "dpspec.schema.json").read_text("utf-8")


def source_name(file_name: str, taken: set[str]) -> str:
    """A valid ``sourceName`` for a file, not in ``taken`` (which it joins).

    The file's name without its directory and ``.fits`` suffix, every
    character the schema does not allow made ``_``, leading characters a name
    cannot begin with dropped, cut to the schema's length; a name already
    taken gets ``_2``, ``_3`` … so that every source keeps its own.
    """
    longest = int(load_schema()["$defs"]["sourceName"]["maxLength"])
    stem = _FITS_SUFFIX.sub("", os.path.basename(file_name))
    base = _NOT_IN_A_NAME.sub("_", stem).lstrip(".+-")[:longest] or "file"
    name, number = base, 1
    while name in taken:
        number += 1
        suffix = f"_{number}"
        name = base[: longest - len(suffix)] + suffix
    taken.add(name)
    return name


def fits_file(argument: str) -> str:
    """The absolute path of a file that the server's collection would take; or UsageProblem."""
    path = os.path.abspath(argument)
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise UsageProblem(f"{argument}: is a directory, not a FITS file")
        if not stat.S_ISREG(info.st_mode):
            raise UsageProblem(f"{argument}: not a regular file")
        with open(path, "rb") as handle:
            head = handle.read(len(FITS_SIGNATURE))
    except FileNotFoundError:
        raise UsageProblem(f"{argument}: no such file") from None
    except OSError as error:
        raise UsageProblem(f"{argument}: cannot be read: {error.strerror}") from None
    if head != FITS_SIGNATURE:
        raise UsageProblem(f"{argument}: not a FITS file (it does not begin with 'SIMPLE  =')")
    return path


def check_id(daq_id: str) -> None:
    """The id names the product too (its ``fileId``): it must follow the stricter rule."""
    rule = load_schema()["$defs"]["target"]["properties"]["fileId"]
    if len(daq_id) > rule["maxLength"] or not re.fullmatch(rule["pattern"], daq_id):
        raise UsageProblem(
            f"--id {daq_id!r} cannot name a DAQ and its product: 1 to {rule['maxLength']} "
            "letters, digits and _ - . : +, beginning with a letter, a digit or _"
        )


def receiver_directory(argument: str) -> str:
    path = os.path.abspath(argument)
    if not os.path.isdir(path):
        raise UsageProblem(f"--receiver {argument}: not an existing directory")
    problem = receiver_problem("", path)
    if problem:
        raise UsageProblem(f"--receiver {argument}: {problem}")
    return path


def new_specification(
    files: Sequence[str], daq_id: str, receivers: Sequence[str] = ()
) -> dict[str, Any]:
    """The specification for ``files`` (blocking: it opens each); UsageProblem names a bad one.

    The keyword source comes first, so the keywords written there take
    precedence over the files' own, as those of the observation software do;
    the files follow in the order given, which is also the order of their
    extensions in the product.  Without ``receivers`` the server releases the
    product to its ``release_dir``.
    """
    check_id(daq_id)
    paths: list[str] = []
    for argument in files:
        path = fits_file(argument)
        if path in paths:
            raise UsageProblem(f"{argument}: given twice")
        paths.append(path)
    taken = {KEYWORDS_SOURCE}
    count = f"{len(paths)} file{'' if len(paths) == 1 else 's'}"
    keywords = {"type": "literalKeyword", "value": f"HISTORY Merged by dpmd from {count}"}
    document: dict[str, Any] = {
        "id": daq_id,
        "sources": [
            {"type": "fitsKeywords", "sourceName": KEYWORDS_SOURCE, "keywords": [keywords]},
            *({"type": "fitsFile", "sourceName": source_name(path, taken), "location": path}
              for path in paths),
        ],
        "target": {"fileId": daq_id},
    }  # fmt: skip
    if receivers:
        document["receivers"] = [
            {"type": "olasReceiver", "path": receiver_directory(directory)}
            for directory in receivers
        ]
    try:
        parse_specification(document)
    except SpecificationError as error:
        raise UsageProblem(f"the specification made would not be valid: {error}") from None
    return document


def spec_command(options: argparse.Namespace, console: Console) -> int:
    """``spec new`` and ``spec schema``: they need no server, so no reactor."""
    if options.spec_command == "schema":
        console.out.write(packaged_schema())
        console.out.flush()
        return OK
    try:
        daq_id = options.id if options.id is not None else daq_id_for(time.time(), ID_PREFIX)
        document = new_specification(options.files, daq_id, options.receiver or ())
    except UsageProblem as problem:
        console.fail(Problem("UsageError", str(problem)))
        return USAGE_ERROR
    console.text(json.dumps(document, indent=2))
    return OK
