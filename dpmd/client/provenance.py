"""``dpmctl provenance``: where each card of a product's primary header came from.

The table has a row per card: its keyword, the card as the header holds it,
the source that supplied it, the sources whose cards of the same keyword it
overrode, and the keyword rule that renamed it.  Asked about one keyword,
each of its cards is shown with its whole override chain: every losing card,
highest priority first, as its source offered it.

A keyword may be typed as the header spells it (``HIERARCH ESO DET DIT``),
as astropy does (``ESO DET DIT``), or as ESO's dictionaries do (``DET DIT``,
``DET.DIT``); case and repeated spaces do not matter.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.text import Text

from dpmd.client.models import CardOrigin
from dpmd.client.render import Narrow, column_table, key_value_table

RECORD = 80
HIERARCH = "HIERARCH "


def normal_keyword(text: str) -> str:
    return " ".join(text.replace(".", " ").upper().split())


def keyword_forms(keyword: str) -> set[str]:
    """The spellings under which a header keyword may be asked for."""
    name = normal_keyword(keyword)
    forms = {name}
    if name.startswith(HIERARCH):
        short = name.removeprefix(HIERARCH)
        forms.add(short)
        if short.startswith("ESO "):
            forms.add(short.removeprefix("ESO "))
    return forms


def cards_of(origins: Sequence[CardOrigin], keyword: str) -> list[CardOrigin]:
    """The cards of ``keyword`` (any of its spellings), in header order."""
    wanted = normal_keyword(keyword)
    return [origin for origin in origins if wanted in keyword_forms(origin.keyword)]


def card_text(card: str) -> str:
    """A card's records, one per line, without their trailing blanks."""
    records = [card[start : start + RECORD].rstrip() for start in range(0, len(card), RECORD)]
    return "\n".join(records) or card


def _rule(origin: CardOrigin) -> str:
    return "-" if origin.rule is None else str(origin.rule)


def _overrode(origin: CardOrigin) -> str:
    return ", ".join(other.source for other in origin.overrode) or "-"


def _stacked(origin: CardOrigin) -> Group:
    facts = f"source {origin.source}  rule {_rule(origin)}  overrode {_overrode(origin)}"
    return Group(Text(card_text(origin.card), overflow="fold"),
                 Padding(Text(facts, overflow="fold"), (0, 0, 0, 2)))  # fmt: skip


def provenance_table(origins: Sequence[CardOrigin]) -> RenderableType:
    """A row per card; on a terminal too narrow for it, each card over two lines."""
    if not origins:
        return Text("no cards")
    rows = [
        (origin.keyword or "(blank)", card_text(origin.card), origin.source, _overrode(origin),
         _rule(origin))
        for origin in origins
    ]  # fmt: skip
    wide = column_table(("KEYWORD", "CARD", "SOURCE", "OVERRODE", "RULE"), rows)
    return Narrow(wide, Group(*(_stacked(origin) for origin in origins)))


def keyword_view(origins: Sequence[CardOrigin]) -> RenderableType:
    """Each card of one keyword with its whole override chain."""
    parts: list[RenderableType] = []
    for origin in origins:
        facts: list[tuple[str, str | Text]] = [("source", origin.source), ("rule", _rule(origin))]
        if not origin.overrode:
            facts.append(("overrode", "nothing"))
        for number, other in enumerate(origin.overrode):
            chain = Text(f"{other.source}  {card_text(other.card)}", overflow="fold")
            facts.append(("overrode" if number == 0 else "", chain))
        parts += [Text(card_text(origin.card), overflow="fold"),
                  Padding(key_value_table(facts), (0, 0, 0, 2))]  # fmt: skip
    return Group(*parts)
