"""The product's primary header: merge keyword contributions, sort, render.

Priority is decided here and only here: the first source wins for value and
ESO keywords, commentary is appended, and an in-place target's own keywords
form the base that every source overrides.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from dpmd.spec.cards import (
    BLANK_RECORD,
    BLOCK,
    RECORDS_PER_BLOCK,
    Card,
    KeywordKind,
    header_bytes,
    is_structure,
    render_keyword,
)
from dpmd.spec.strings import CONTINUE_PREFIX

from . import checksum

#: DICD category order of ESO keywords; other categories follow alphabetically.
ESO_CATEGORY_ORDER = ("DPR", "OBS", "TPL", "GEN", "TEL", "ADA", "INS", "DET")
_NEW_FILE_STRUCTURE = (
    ("SIMPLE", True, "conforms to FITS standard"),
    ("BITPIX", 8, "array data type"),
    ("NAXIS", 0, "number of array dimensions"),
)
_EXTEND = ("EXTEND", True, "FITS dataset may contain extensions")
_LONGSTRN = ("LONGSTRN", "OGIP 1.0", "The OGIP long string convention is used")


#: The source name of the cards the merger writes itself (structure of a new
#: file, EXTEND, ARCFILE, ORIGFILE, DATE, LONGSTRN, CHECKSUM, DATASUM). The
#: parentheses keep it apart from every sourceName, which cannot hold them.
MERGER = "(dpmd-merge)"
#: Cards merged between two calls of `tick`.
_TICK_EVERY = 1024


@dataclass(frozen=True)
class Contribution:
    """The keywords one source contributes; lower rank = higher priority.

    `renamed_by[i]`, when given, is the index of the rule that renamed `cards[i]`.
    """

    source_name: str
    rank: int
    cards: tuple[Card, ...]
    renamed_by: tuple[int | None, ...] = ()


class Candidate(NamedTuple):
    """A card that a source offers the product after its rules (`rule` renamed it).

    Named tuples, not dataclasses: a big header makes thousands of them, and
    they cost a third as much to create.
    """

    source: str
    card: Card
    rule: int | None = None


class Placed(NamedTuple):
    """A card of the product's primary header, where it came from, and what it replaced.

    `overrode` lists the other offers of the same keyword, the one that would
    have been chosen next first.
    """

    card: Card
    source: str
    rule: int | None = None
    overrode: tuple[Candidate, ...] = ()


#: An offer of a card: rank, minus its order of appearance, source, card, renaming rule.
_Offer = tuple[int, int, str, Card, int | None]
_priority = operator.itemgetter(0, 1)


def keyword_of(card: Card) -> str:
    """The keyword as the header spells it: `HIERARCH ESO DET DIT`, `OBJECT`, `COMMENT`."""
    return f"HIERARCH ESO {card.name}" if card.kind is KeywordKind.ESO else card.name


def _by_merger(card: Card) -> Placed:
    return Placed(card, MERGER)


def merge_keywords(
    contributions: Sequence[Contribution], tick: Callable[[], None] | None = None
) -> list[Placed]:
    """Merge in the given order (in-place target first, then sources by priority).

    A keyword's position is where it first appears; its value comes from the
    contribution with the lowest rank (within one contribution, the last one).
    """
    offers: dict[tuple[KeywordKind, str], list[_Offer]] = {}
    commentary: list[Placed] = []
    order = 0
    for contribution in contributions:
        name, rank = contribution.source_name, contribution.rank
        rules = contribution.renamed_by or (None,) * len(contribution.cards)
        for card, rule in zip(contribution.cards, rules, strict=True):
            order += 1
            if tick is not None and not order % _TICK_EVERY:
                tick()
            if card.kind is KeywordKind.COMMENTARY:
                commentary.append(Placed(card, name, rule))
                continue
            offer = (rank, -order, name, card, rule)
            identity = card.identity
            same = offers.get(identity)
            if same is None:
                offers[identity] = [offer]
            else:
                same.append(offer)
    chosen = []
    for same in offers.values():
        if len(same) == 1:
            _, _, name, card, rule = same[0]
            chosen.append(Placed(card, name, rule))
            continue
        same.sort(key=_priority)  # lowest rank, then the latest, wins
        _, _, name, card, rule = same[0]
        others = tuple(Candidate(other[2], other[3], other[4]) for other in same[1:])
        chosen.append(Placed(card, name, rule, others))
    values = [placed for placed in chosen if placed.card.kind is KeywordKind.VALUE]
    eso = sorted(
        (placed for placed in chosen if placed.card.kind is KeywordKind.ESO),
        key=lambda placed: eso_sort_key(placed.card),
    )
    return values + eso + commentary


def eso_sort_key(card: Card) -> tuple[int, str]:
    category = card.name.split(" ", 1)[0]
    if category in ESO_CATEGORY_ORDER:
        return ESO_CATEGORY_ORDER.index(category), card.name
    return len(ESO_CATEGORY_ORDER), card.name


def structure_cards(
    target: Sequence[Card] | None, target_name: str = ""
) -> tuple[list[Placed], list[Card]]:
    """Mandatory keywords first, then EXTEND = T, then the target's other structure cards.

    A new file gets an empty primary HDU. An in-place target keeps its own
    structure records verbatim (they describe its primary data). Also returns
    the target's structure cards that are not used (its EXTEND, duplicates).
    """
    extend = _by_merger(render_keyword(KeywordKind.VALUE, *_EXTEND))
    if target is None:
        cards = [render_keyword(KeywordKind.VALUE, *item) for item in _NEW_FILE_STRUCTURE]
        return [_by_merger(card) for card in cards] + [extend], []
    structure = [c for c in target if c.kind is KeywordKind.VALUE and is_structure(c.name)]
    naxis = [c for c in structure if c.name.startswith("NAXIS") and c.name[5:].isdigit()]
    naxis.sort(key=lambda c: int(c.name[5:]))
    mandatory = [c for n in ("SIMPLE", "BITPIX", "NAXIS") for c in structure if c.name == n][:3]
    rest = [c for c in structure if c not in mandatory and c not in naxis and c.name != "EXTEND"]
    first = [replace(c, records=c.records[:1]) for c in mandatory + naxis]
    used = {id(c) for c in mandatory + naxis + rest}
    placed = [Placed(card, target_name) for card in first]
    placed += [extend] + [Placed(card, target_name) for card in rest]
    return placed, [card for card in structure if id(card) not in used]


def reserved_cards(archive_name: str, product_name: str, date: str) -> list[Placed]:
    items = (
        ("ARCFILE", archive_name, "Archive File Name"),
        ("ORIGFILE", product_name, "Original File Name"),
        ("DATE", date, "Date the file was written"),
    )
    return [_by_merger(render_keyword(KeywordKind.VALUE, *item)) for item in items]


def _checksum_card(value: str) -> Card:
    return render_keyword(KeywordKind.VALUE, "CHECKSUM", value, "HDU checksum")


def _datasum_card(datasum: int) -> Card:
    return render_keyword(KeywordKind.VALUE, "DATASUM", str(datasum), "data unit checksum")


def _checksum_record(value: str) -> str:
    return _checksum_card(value).records[0]


def _datasum_record(datasum: int) -> str:
    return _datasum_card(datasum).records[0]


@dataclass(frozen=True)
class ProductHeader:
    """Header records before END (CHECKSUM and DATASUM last, blank padding after them),
    and the cards they form, in the same order, each with its origin."""

    records: tuple[str, ...]
    cards: tuple[Placed, ...]

    @property
    def size(self) -> int:
        return len(header_bytes(self.records))

    @property
    def blocks(self) -> int:
        return self.size // BLOCK

    def final_records(self, datasum: int) -> list[str]:
        """The records as written: DATASUM set, CHECKSUM making the HDU sum to -0."""
        records = list(self.records)
        at = records.index(_checksum_record("0" * 16))
        records[at + 1] = _datasum_record(datasum)
        total = checksum.add(checksum.sum32(header_bytes(records)), datasum)
        records[at] = _checksum_record(checksum.encode(total))
        return records


def build_header(
    structure: Sequence[Placed],
    reserved: Sequence[Placed],
    keywords: Sequence[Placed],
    min_blocks: int = 0,
) -> ProductHeader:
    """Assemble the header; pad with blank records so it spans at least `min_blocks`.

    `LONGSTRN` follows the reserved keywords exactly when some keyword is
    continued on CONTINUE records. Padding goes before END so an in-place
    header fills exactly the blocks the target had (a shorter header must
    still end in its last block).
    """
    cards = [*structure, *reserved]
    continued = [placed.card.records for placed in (*structure, *keywords)]
    if any(
        record.startswith(CONTINUE_PREFIX)
        for records in continued
        if len(records) > 1  # only a long string has more than one record
        for record in records
    ):
        cards.append(_by_merger(render_keyword(KeywordKind.VALUE, *_LONGSTRN)))
    cards += keywords
    cards += [_by_merger(_checksum_card("0" * 16)), _by_merger(_datasum_card(0))]
    records = [record for placed in cards for record in placed.card.records]
    before_end = (min_blocks - 1) * RECORDS_PER_BLOCK
    records += [BLANK_RECORD] * max(0, before_end - len(records))
    return ProductHeader(tuple(records), tuple(cards))
