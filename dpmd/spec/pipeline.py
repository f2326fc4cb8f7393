"""Run a source's keyword rules over its keywords: the pipeline of filters and renames.

It lives with the specification, not in the merger, because the keywords of a
`fitsKeywords` source are known when a specification is queued: validation
runs the same pipeline over them, so a rename that cannot be written is
refused then rather than during the merge. For a file source the merger runs
it on the keywords of the file's primary header.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .cards import Card, CardError, KeywordKind, RecordTooLong, is_reserved, is_structure
from .rules import FilterRule, KeywordRule, RuleError, select

_GLOB_CHARACTERS = frozenset("*?[")


class RenameError(RuleError):
    """A transform gives a keyword a name it cannot have; `rule` is its index."""

    def __init__(self, rule: int, message: str):
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class Refusal:
    """A renamed keyword that no FITS record can hold any more (name plus value too long)."""

    rule: int
    name: str
    new_name: str
    reason: str

    def describe(self) -> str:
        return (
            f"keyword {self.name!r} renamed to {self.new_name!r} by keywordRules[{self.rule}] "
            f"is left out: {self.reason}"
        )


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


def named_literally(rules: Iterable[KeywordRule]) -> frozenset[tuple[KeywordKind, str]]:
    """Keywords that some `+` pattern of the rules names without any wildcard."""
    return frozenset(
        (kind, pattern.glob)
        for rule in rules
        for pattern in rule.patterns
        if pattern.include and not _GLOB_CHARACTERS.intersection(pattern.glob)
        for kind in pattern.kinds
    )


def run_rules(
    cards: Sequence[Card], rules: Sequence[KeywordRule] | None
) -> tuple[list[Card], list[Refusal]]:
    """Absent rules keep every card; `[]` keeps none; else each rule takes the
    previous rule's output. Returns the cards and the renames that do not fit.

    Raises RenameError for a rename to a name the kind cannot have.
    """
    current = list(cards)
    if rules is None:
        return current, []
    if not rules:
        return [], []  # an empty rule list explicitly copies nothing
    refused: list[Refusal] = []
    for number, rule in enumerate(rules):
        chosen = select(rule.patterns, [card.identity for card in current])
        if isinstance(rule, FilterRule):
            current = [card for card, keep in zip(current, chosen, strict=True) if keep]
            continue
        renamed = []
        for card, hit in zip(current, chosen, strict=True):
            if not hit:
                renamed.append(card)
                continue
            new_name = rule.rename(card.name)
            try:
                renamed.append(_rename(card, new_name, number))
            except RecordTooLong as exc:
                refused.append(Refusal(number, card.name, new_name, str(exc)))
        current = renamed
    return current, refused


def _rename(card: Card, new_name: str, number: int) -> Card:
    if card.kind is KeywordKind.VALUE and (is_structure(new_name) or is_reserved(new_name)):
        raise RenameError(
            number,
            f"renaming {card.name!r} to {new_name!r} names a keyword the merger writes itself",
        )
    try:
        return card.renamed(new_name)
    except RecordTooLong:
        raise
    except CardError as exc:
        raise RenameError(number, f"cannot rename {card.name!r} to {new_name!r}: {exc}") from None
