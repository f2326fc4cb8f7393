"""Where every card of the product's primary header came from.

The header is assembled from `Placed` cards that carry their origin (see
`header.py`), so this module only turns them into data: one entry per card
of the product, in header order, in the shape of the server's
`/daq/GetDaqProvenance`, plus the source cards that did not reach the product
and what each source is. docs/merge.md (*Provenance*) describes the format.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from dpmd.spec import FitsFileSource

from .fitsio import pwrite_all
from .header import MERGER, Placed, keyword_of
from .plan import Plan
from .writer import AtomicOutput


def _card_entry(placed: Placed, text: str) -> dict[str, Any]:
    overrode = placed.overrode
    return {
        "keyword": keyword_of(placed.card),
        "card": text,
        "source": placed.source,
        "overrode": [
            {"source": other.source, "card": "".join(other.card.records)} for other in overrode
        ]
        if overrode
        else [],
        "rule": placed.rule,
    }


def _sources(plan: Plan) -> dict[str, dict[str, Any]]:
    """What each source name stands for: HDU 0 of which file, or a keyword list."""
    spec = plan.spec
    described: dict[str, dict[str, Any]] = {}
    if spec.target_source is not None:
        target = spec.target_source
        described[target.source_name] = {
            "type": "fitsFile",
            "target": True,
            "location": target.location,
            "path": plan.paths[target.source_name],
            "hdu": 0,
        }
    for priority, source in enumerate(spec.sources):
        if isinstance(source, FitsFileSource):
            described[source.source_name] = {
                "type": "fitsFile",
                "priority": priority,
                "location": source.location,
                "path": plan.paths[source.source_name],
                "hdu": 0,
            }
        else:
            described[source.source_name] = {"type": "fitsKeywords", "priority": priority}
    described[MERGER] = {"type": "merger"}
    return described


def provenance(plan: Plan, records: Sequence[str] | None = None) -> dict[str, Any]:
    """The provenance object: `cards`, `dropped` and `sources`.

    `records` are the header records as written (CHECKSUM and DATASUM final);
    without them the planned records are used (those two as placeholders).
    A card continued on CONTINUE records is given as its records joined
    without separator, 80 characters each, as the header holds them.
    """
    records = plan.header.records if records is None else records
    cards, position = [], 0
    for placed in plan.header.cards:
        count = len(placed.card.records)
        text = records[position] if count == 1 else "".join(records[position : position + count])
        cards.append(_card_entry(placed, text))
        position += count
    dropped = [
        {
            "keyword": keyword_of(entry.card),
            "source": source,
            "card": "".join(entry.card.records),
            "rule": entry.rule,
            "reason": entry.reason,
        }
        for source, entry in plan.dropped
    ]
    return {"cards": cards, "dropped": dropped, "sources": _sources(plan)}


def to_json(document: dict[str, Any]) -> str:
    """The provenance as compact JSON text, serialized once for the line and the file
    (a header of thousands of cards gives megabytes)."""
    return json.dumps(document, separators=(",", ":"))


def write_provenance(path: str, text: str) -> None:
    """Write the provenance JSON text to a file: complete under its name, or not at all."""
    data = (text + "\n").encode()
    final = os.path.abspath(path)
    with AtomicOutput(final) as out:
        pwrite_all(out.fd, data, 0, final)
        out.commit()
