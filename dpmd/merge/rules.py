"""A source's contribution: its user keywords, through its keyword rules.

The rules are parsed (and refused when malformed) and evaluated by
`dpmd.spec.pipeline`; this module decides what enters the pipeline and turns
its outcome into what the merger reports. A source whose primary data array is
not merged also withholds the keywords that describe that array (WCS,
scaling, random-groups parameters), unless a rule names one of them exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dpmd.spec.cards import Card, KeywordKind
from dpmd.spec.names import describes_primary_data
from dpmd.spec.pipeline import Refusal, RenameError, is_user_keyword, named_literally, run_rules
from dpmd.spec.rules import KeywordRule

from .errors import SpecError


@dataclass(frozen=True)
class Selection:
    """What a source contributes, and what it leaves out that the alert must name."""

    cards: tuple[Card, ...]
    withheld: tuple[str, ...] = ()
    refused: tuple[Refusal, ...] = ()


def apply_rules(
    cards: Sequence[Card],
    rules: Sequence[KeywordRule] | None,
    source_name: str,
    data_dropped: bool = False,
) -> Selection:
    """Absent rules keep every user keyword; `[]` keeps none; else the pipeline decides.

    With `data_dropped` (the source's primary array is not merged), keywords
    describing that array enter the pipeline only when a `+` pattern of the
    rules names them literally (`"+v BUNIT"`), never through a wildcard.
    """
    current = [card for card in cards if is_user_keyword(card)]
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
        withheld = [card.name for card in describing if _would_pass(card, rules)]
    try:
        selected, refused = run_rules(current, rules)
    except RenameError as exc:
        raise SpecError(f"source {source_name!r}, keywordRules[{exc.rule}]: {exc}") from None
    return Selection(tuple(selected), tuple(withheld), tuple(refused))


def _would_pass(card: Card, rules: Sequence[KeywordRule] | None) -> bool:
    """Whether the rules would have let `card` through (so the alert names it)."""
    try:
        return bool(run_rules([card], rules)[0])
    except RenameError:
        return True
