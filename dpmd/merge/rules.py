"""Run a source's keyword-rule pipeline over the keywords of its primary header.

The rules themselves are parsed (and refused when malformed) by `dpmd.spec`;
this module only evaluates them: each rule takes the output of the previous
one, starting from the source's user keywords.
"""

from __future__ import annotations

from collections.abc import Sequence

from dpmd.spec.cards import Card, CardError, KeywordKind, is_reserved, is_structure
from dpmd.spec.rules import FilterRule, KeywordRule, select

from .errors import SpecError


def is_user_keyword(card: Card) -> bool:
    """User keywords are what a source may contribute: not structure, not reserved,
    not blank padding records, not a stray CONTINUE or END."""
    if card.kind is KeywordKind.VALUE:
        return not (is_structure(card.name) or is_reserved(card.name))
    if card.kind is KeywordKind.COMMENTARY:
        if card.name in ("CONTINUE", "END"):
            return False
        return card.name != "" or card.records[0].strip() != ""
    return True


def apply_rules(
    cards: Sequence[Card], rules: Sequence[KeywordRule] | None, source_name: str
) -> list[Card]:
    """Absent rules keep every user keyword; `[]` keeps none; else the pipeline decides."""
    current = [card for card in cards if is_user_keyword(card)]
    if rules is None:
        return current
    if not rules:
        return []  # an empty rule list explicitly copies nothing
    for number, rule in enumerate(rules):
        chosen = select(rule.patterns, [card.identity for card in current])
        if isinstance(rule, FilterRule):
            current = [card for card, keep in zip(current, chosen, strict=True) if keep]
        else:
            current = [
                _rename(card, rule.rename(card.name), source_name, number) if hit else card
                for card, hit in zip(current, chosen, strict=True)
            ]
    return current


def _rename(card: Card, new_name: str, source_name: str, number: int) -> Card:
    where = f"source {source_name!r}, keywordRules[{number}]"
    if card.kind is KeywordKind.VALUE and (is_structure(new_name) or is_reserved(new_name)):
        raise SpecError(
            f"{where}: renaming {card.name!r} to {new_name!r} names a keyword "
            "the merger writes itself"
        )
    try:
        return card.renamed(new_name)
    except CardError as exc:
        raise SpecError(f"{where}: cannot rename {card.name!r} to {new_name!r}: {exc}") from None
