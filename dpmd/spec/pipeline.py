"""Run a source's keyword rules over its keywords: the pipeline of filters and renames.

It lives with the specification, not in the merger, because the keywords of a
`fitsKeywords` source are known when a specification is queued: validation
runs the same pipeline over them, so a rename that cannot be written is
refused then rather than during the merge. For a file source the merger runs
it on the keywords of the file's primary header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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


@dataclass
class Outcome:
    """What the rules made of a source's cards, and where each card went.

    `renamed_by[i]` is the index of the last transform that renamed `cards[i]`
    (None if none did); `dropped` pairs each input card a filter removed with
    that filter's index (None for every card when the rule list is `[]`);
    `refused[i]` is a rename that no record can hold, of the input card
    `refused_origins[i]`.
    """

    cards: list[Card]
    renamed_by: list[int | None]
    dropped: list[tuple[Card, int | None]]
    refused: list[Refusal]
    refused_origins: list[Card]


#: Cards looked at between two calls of a run_rules `tick` (a cheap time check).
_TICK_EVERY = 512


def run_rules(
    cards: Sequence[Card],
    rules: Sequence[KeywordRule] | None,
    tick: Callable[[], None] | None = None,
) -> Outcome:
    """Absent rules keep every card; `[]` keeps none; else each rule takes the
    previous rule's output. The outcome also tells which rule renamed or
    dropped each card, and which renames no record can hold.

    Raises RenameError for a rename to a name the kind cannot have. `tick`
    is called between rules and every few hundred cards, so that a caller can
    show it is alive while long rule lists run over big headers.
    """
    current = list(cards)
    origins = list(cards)
    renamed_by: list[int | None] = [None] * len(current)
    outcome = Outcome(current, renamed_by, [], [], [])
    if rules is None:
        return outcome
    if not rules:  # an empty rule list explicitly copies nothing
        return Outcome([], [], [(card, None) for card in current], [], [])
    for number, rule in enumerate(rules):
        if tick is not None:
            tick()
        chosen = select(rule.patterns, [card.identity for card in current])
        if isinstance(rule, FilterRule):
            kept = [i for i, keep in enumerate(chosen) if keep]
            outcome.dropped += [(origins[i], number) for i, keep in enumerate(chosen) if not keep]
            current = [current[i] for i in kept]
            origins = [origins[i] for i in kept]
            renamed_by = [renamed_by[i] for i in kept]
            continue
        renamed, renamed_origins, renamed_rules = [], [], []
        for index, (card, hit) in enumerate(zip(current, chosen, strict=True)):
            if tick is not None and index % _TICK_EVERY == _TICK_EVERY - 1:
                tick()
            rule_of_card = renamed_by[index]
            if hit:
                new_name = rule.rename(card.name)
                try:
                    new_card = _rename(card, new_name, number)
                except RecordTooLong as exc:
                    outcome.refused.append(Refusal(number, card.name, new_name, str(exc)))
                    outcome.refused_origins.append(origins[index])
                    continue
                if new_card is not card:
                    rule_of_card = number
                card = new_card
            renamed.append(card)
            renamed_origins.append(origins[index])
            renamed_rules.append(rule_of_card)
        current, origins, renamed_by = renamed, renamed_origins, renamed_rules
    outcome.cards, outcome.renamed_by = current, renamed_by
    return outcome


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
