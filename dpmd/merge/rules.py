"""A source's contribution: its user keywords, through its keyword rules.

The rules are parsed (and refused when malformed) and evaluated by
`dpmd.spec.pipeline`; this module decides what enters the pipeline and turns
its outcome into what the merger reports. A source whose primary data array is
not merged also withholds the keywords that describe that array (WCS,
scaling, random-groups parameters), unless a rule names one of them exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dpmd.spec.cards import Card, KeywordKind, is_structure
from dpmd.spec.names import describes_primary_data
from dpmd.spec.pipeline import Refusal, RenameError, is_user_keyword, named_literally, run_rules
from dpmd.spec.rules import KeywordRule

from .errors import SpecError

#: Why a card of a source is not in the product (see docs/merge.md, *Provenance*).
FILTERED = "filter"  # a filter rule did not select it (`rule` is its index)
NO_RULES = "no-rules"  # keywordRules is [] (`rule` is null)
TOO_LONG = "too-long"  # renamed by transform `rule`, no record can hold it any more
STRUCTURE = "structure"  # describes the source's own HDU; the merger writes the product's
RESERVED = "reserved"  # ARCFILE ORIGFILE DATE LONGSTRN CHECKSUM DATASUM: the merger writes them
ARRAY = "array"  # describes a primary array that is not merged
STRAY = "stray"  # a CONTINUE record that continues no string


@dataclass(frozen=True)
class Dropped:
    """A card of a source (as the source has it) that does not reach the product."""

    card: Card
    reason: str
    rule: int | None = None


@dataclass(frozen=True)
class Selection:
    """What a source contributes, and what it leaves out.

    `renamed_by[i]` is the index of the rule that renamed `cards[i]` (None if
    none did); `withheld` and `refused` are what the alert must name.
    """

    cards: tuple[Card, ...]
    renamed_by: tuple[int | None, ...] = ()
    dropped: tuple[Dropped, ...] = ()
    withheld: tuple[str, ...] = ()
    refused: tuple[Refusal, ...] = ()


def _not_user_reason(card: Card) -> str | None:
    """Why a card is no user keyword, or None for a blank record (padding, not a card)."""
    if card.kind is KeywordKind.VALUE:
        return STRUCTURE if is_structure(card.name) else RESERVED
    return STRAY if card.name in ("CONTINUE", "END") else None


def apply_rules(
    cards: Sequence[Card],
    rules: Sequence[KeywordRule] | None,
    source_name: str,
    data_dropped: bool = False,
    own_structure: bool = False,
    tick: Callable[[], None] | None = None,
) -> Selection:
    """Absent rules keep every user keyword; `[]` keeps none; else the pipeline decides.

    With `data_dropped` (the source's primary array is not merged), keywords
    describing that array enter the pipeline only when a `+` pattern of the
    rules names them literally (`"+v BUNIT"`), never through a wildcard.
    `own_structure` (the in-place target) leaves structure cards out of
    `dropped`: the header takes them as they are.
    """
    current: list[Card] = []
    dropped: list[Dropped] = []
    for card in cards:
        if is_user_keyword(card):
            current.append(card)
            continue
        reason = _not_user_reason(card)
        if reason and not (own_structure and reason == STRUCTURE):
            dropped.append(Dropped(card, reason))
    withheld: list[str] = []
    if data_dropped:
        wanted = named_literally(rules or ())
        describing = [
            card
            for card in current
            if card.kind is KeywordKind.VALUE
            and describes_primary_data(card.name)
            and card.identity not in wanted
        ]
        left_out = {id(card) for card in describing}
        current = [card for card in current if id(card) not in left_out]
        dropped += [Dropped(card, ARRAY) for card in describing]
        withheld = [card.name for card in describing if _would_pass(card, rules)]
    try:
        outcome = run_rules(current, rules, tick)
    except RenameError as exc:
        raise SpecError(f"source {source_name!r}, keywordRules[{exc.rule}]: {exc}") from None
    dropped += [
        Dropped(card, FILTERED if rule is not None else NO_RULES, rule)
        for card, rule in outcome.dropped
    ]
    dropped += [
        Dropped(card, TOO_LONG, refusal.rule)
        for card, refusal in zip(outcome.refused_origins, outcome.refused, strict=True)
    ]
    position = {id(card): index for index, card in enumerate(cards)}
    dropped.sort(key=lambda entry: position[id(entry.card)])
    return Selection(
        tuple(outcome.cards),
        tuple(outcome.renamed_by),
        tuple(dropped),
        tuple(withheld),
        tuple(outcome.refused),
    )


def _would_pass(card: Card, rules: Sequence[KeywordRule] | None) -> bool:
    """Whether the rules would have let `card` through (so the alert names it)."""
    try:
        return bool(run_rules([card], rules).cards)
    except RenameError:
        return True
