"""What each source gives the product's primary header, and what it cannot give.

Every source's keywords go through its rules (`rules.apply_rules`); a file
source's primary data is never merged, so it also withholds the keywords that
describe that data. Whatever a source cannot contribute is told in one
*UnmergedData* alert for that source.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dpmd.spec import FitsFileSource, FitsKeywordsSource, Source, Specification
from dpmd.spec.cards import Card, CardError, cards_from_records

from .errors import SourceError
from .fitsio import FitsLayout
from .header import Contribution, Placed, merge_keywords
from .rules import Dropped, Selection, apply_rules

log = logging.getLogger("dpmd.merge")
#: Names of withheld keywords listed in an alert before "and N more".
_LISTED_NAMES = 20


@dataclass(frozen=True)
class Alert:
    """An alert the merger reports to its caller (``UnmergedData``, ``PrimaryHduResized``)."""

    category: str
    key: str
    severity: str
    description: str


@dataclass(frozen=True)
class Keywords:
    """The merged keywords, the target's own primary cards, the alerts raised, and
    each source's cards that do not reach the product (source name, why)."""

    merged: tuple[Placed, ...]
    target_cards: tuple[Card, ...] | None
    alerts: tuple[Alert, ...]
    dropped: tuple[tuple[str, Dropped], ...] = ()


def primary_cards(source: FitsFileSource, layout: FitsLayout) -> list[Card]:
    try:
        return cards_from_records(layout.primary_records)
    except CardError as exc:
        raise SourceError(
            f"source {source.source_name!r}: bad primary header record: {exc}"
        ) from None


def gather(
    spec: Specification,
    layouts: Mapping[str, FitsLayout],
    tick: Callable[[], None] | None = None,
) -> Keywords:
    """Run every source's rules and merge the results by priority."""
    contributions: list[Contribution] = []
    alerts: list[Alert] = []
    dropped: list[tuple[str, Dropped]] = []

    def contribute(source: Source, rank: int, selection: Selection) -> None:
        name = source.source_name
        contributions.append(Contribution(name, rank, selection.cards, selection.renamed_by))
        dropped.extend((name, entry) for entry in selection.dropped)

    target, target_cards = spec.target_source, None
    if target is not None:
        target_cards = primary_cards(target, layouts[target.source_name])
        selection = apply_rules(
            target_cards, target.keyword_rules, target.source_name, own_structure=True, tick=tick
        )
        contribute(target, len(spec.sources), selection)
        _alert_unmerged(target, None, selection, alerts)
    for rank, source in enumerate(spec.sources):
        if tick is not None:
            tick()
        layout = None
        if isinstance(source, FitsKeywordsSource):
            cards = [keyword.card for keyword in source.keywords]
            selection = apply_rules(cards, source.keyword_rules, source.source_name, tick=tick)
        else:
            layout = layouts[source.source_name]
            selection = apply_rules(
                primary_cards(source, layout),
                source.keyword_rules,
                source.source_name,
                data_dropped=layout.primary.naxis > 0,
                tick=tick,
            )
        contribute(source, rank, selection)
        _alert_unmerged(source, layout, selection, alerts)
    merged = merge_keywords(contributions, tick)
    own = tuple(target_cards) if target_cards is not None else None
    return Keywords(tuple(merged), own, tuple(alerts), tuple(dropped))


def _alert_unmerged(
    source: Source, layout: FitsLayout | None, selection: Selection, alerts: list[Alert]
) -> None:
    """One UnmergedData alert per source for all it cannot contribute.

    Its primary data (and the keywords describing it) are alerted unless
    `alertUnmergeable` is false; renamed keywords that no record can hold are
    always alerted, since nothing else would tell that they are missing.
    """
    name = source.source_name
    parts = []
    withheld = ""
    if selection.withheld:
        withheld = f"keywords describing that data are left out: {_names(selection.withheld)}"
    if layout is not None and layout.primary.data_size:
        text = (
            f"primary HDU data of source {name!r} ({layout.primary.data_size} bytes) "
            "is not merged; only its keywords and extensions are"
        ) + (f"; {withheld}" if withheld else "")
        if isinstance(source, FitsFileSource) and not source.alert_unmergeable:
            log.info("%s (alert disabled by alertUnmergeable)", text)
        else:
            parts.append(text)
    elif withheld:
        log.info("source %r has an empty primary array; %s", name, withheld)
    refusals = [refusal.describe() for refusal in selection.refused]
    if refusals and not parts:
        refusals[0] = f"source {name!r}: {refusals[0]}"
    parts += refusals
    if parts:
        alerts.append(Alert("UnmergedData", name, "Warning", "; ".join(parts)))


def _names(names: Sequence[str]) -> str:
    text = ", ".join(names[:_LISTED_NAMES])
    more = len(names) - _LISTED_NAMES
    return text + (f" and {more} more" if more > 0 else "")
