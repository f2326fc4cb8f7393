"""The product's primary header: merge keyword contributions, sort, render.

Priority is decided here and only here: the first source wins for value and
ESO keywords, commentary is appended, and an in-place target's own keywords
form the base that every source overrides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Contribution:
    """The keywords one source contributes; lower rank = higher priority."""

    source_name: str
    rank: int
    cards: tuple[Card, ...]


def merge_keywords(contributions: Sequence[Contribution]) -> list[Card]:
    """Merge in the given order (in-place target first, then sources by priority).

    A keyword's position is where it first appears; its value comes from the
    contribution with the lowest rank (within one contribution, the last one).
    """
    slots: dict[tuple[KeywordKind, str], tuple[int, Card]] = {}
    commentary: list[Card] = []
    for contribution in contributions:
        for card in contribution.cards:
            if card.kind is KeywordKind.COMMENTARY:
                commentary.append(card)
                continue
            held = slots.get(card.identity)
            if held is None or contribution.rank <= held[0]:
                slots[card.identity] = (contribution.rank, card)
    cards = [card for _, card in slots.values()]
    values = [card for card in cards if card.kind is KeywordKind.VALUE]
    eso = sorted((card for card in cards if card.kind is KeywordKind.ESO), key=eso_sort_key)
    return values + eso + commentary


def eso_sort_key(card: Card) -> tuple[int, str]:
    category = card.name.split(" ", 1)[0]
    if category in ESO_CATEGORY_ORDER:
        return ESO_CATEGORY_ORDER.index(category), card.name
    return len(ESO_CATEGORY_ORDER), card.name


def structure_records(target: Sequence[Card] | None) -> list[str]:
    """Mandatory keywords first, then EXTEND = T, then the target's other structure cards.

    A new file gets an empty primary HDU. An in-place target keeps its own
    structure records verbatim (they describe its primary data).
    """
    extend = render_keyword(KeywordKind.VALUE, *_EXTEND).records[0]
    if target is None:
        cards = [render_keyword(KeywordKind.VALUE, *item) for item in _NEW_FILE_STRUCTURE]
        return [card.records[0] for card in cards] + [extend]
    structure = [c for c in target if c.kind is KeywordKind.VALUE and is_structure(c.name)]
    naxis = [c for c in structure if c.name.startswith("NAXIS") and c.name[5:].isdigit()]
    naxis.sort(key=lambda c: int(c.name[5:]))
    mandatory = [c for n in ("SIMPLE", "BITPIX", "NAXIS") for c in structure if c.name == n][:3]
    rest = [c for c in structure if c not in mandatory and c not in naxis and c.name != "EXTEND"]
    first = [c.records[0] for c in mandatory + naxis]
    return first + [extend] + [record for card in rest for record in card.records]


def reserved_records(archive_name: str, product_name: str, date: str) -> list[str]:
    items = (
        ("ARCFILE", archive_name, "Archive File Name"),
        ("ORIGFILE", product_name, "Original File Name"),
        ("DATE", date, "Date the file was written"),
    )
    return [render_keyword(KeywordKind.VALUE, *item).records[0] for item in items]


def _checksum_record(value: str) -> str:
    return render_keyword(KeywordKind.VALUE, "CHECKSUM", value, "HDU checksum").records[0]


def _datasum_record(datasum: int) -> str:
    card = render_keyword(KeywordKind.VALUE, "DATASUM", str(datasum), "data unit checksum")
    return card.records[0]


@dataclass(frozen=True)
class ProductHeader:
    """Header records before END (CHECKSUM and DATASUM last, blank padding after them)."""

    records: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(header_bytes(self.records))

    @property
    def blocks(self) -> int:
        return self.size // BLOCK

    def render(self, datasum: int) -> bytes:
        """The final header bytes: DATASUM set, CHECKSUM making the HDU sum to -0."""
        records = list(self.records)
        at = records.index(_checksum_record("0" * 16))
        records[at + 1] = _datasum_record(datasum)
        total = checksum.add(checksum.sum32(header_bytes(records)), datasum)
        records[at] = _checksum_record(checksum.encode(total))
        return header_bytes(records)


def build_header(
    structure: list[str], reserved: list[str], keywords: Sequence[Card], min_blocks: int = 0
) -> ProductHeader:
    """Assemble the header; pad with blank records so it spans at least `min_blocks`.

    `LONGSTRN` follows the reserved keywords exactly when some keyword is
    continued on CONTINUE records. Padding goes before END so an in-place
    header fills exactly the blocks the target had (a shorter header must
    still end in its last block).
    """
    body = [record for card in keywords for record in card.records]
    if any(record.startswith(CONTINUE_PREFIX) for record in structure + body):
        reserved = [*reserved, render_keyword(KeywordKind.VALUE, *_LONGSTRN).records[0]]
    records = structure + reserved + body
    records += [_checksum_record("0" * 16), _datasum_record(0)]
    before_end = (min_blocks - 1) * RECORDS_PER_BLOCK
    records += [BLANK_RECORD] * max(0, before_end - len(records))
    return ProductHeader(tuple(records))
