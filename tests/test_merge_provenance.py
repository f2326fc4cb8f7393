"""Keyword provenance: where every card of the product's primary header came from.

Products are read back raw (their records) and by astropy; sources are made
with astropy. Every card of the product must have exactly one entry, in
header order, whose source and override chain follow the priority rules of
docs/merge.md; every card of every source must be accounted for once (the
winner, an overridden card, or a dropped one).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections import Counter
from typing import Any

from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dpmd.merge.header import ESO_CATEGORY_ORDER, MERGER

from .fitsfactory import image, image_hdu, run_cli, run_merge, write_fits, write_spec

DATE = "2024-02-01T12:00:00"
FILE_ID = "P.2024-01-01T00:00:00.000"
PRODUCT = FILE_ID + ".fits"


def primary_records(path: str) -> list[str]:
    """The product's primary header records before END, blank records left out."""
    records = []
    with open(path, "rb") as stream:
        while True:
            block = stream.read(2880).decode("ascii")
            for start in range(0, 2880, 80):
                record = block[start : start + 80]
                if record.startswith("END     "):
                    return [r for r in records if r.strip()]
                records.append(record)


def source_cards(path: str) -> list[str]:
    """HDU 0 cards of a source file as astropy reads them (CONTINUE records joined)."""
    with fits.open(path) as hdus:
        return [card.image for card in hdus[0].header.cards if card.image.strip()]


def of_type(lines: list[dict], kind: str) -> list[dict]:
    return [line for line in lines if line["type"] == kind]


def file_source(name: str, location: str, **extra: object) -> dict:
    return {"type": "fitsFile", "sourceName": name, "location": location, **extra}


def by_keyword(entries: list[dict]) -> dict[str, dict]:
    return {entry["keyword"]: entry for entry in entries}


class ProvenanceTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.product = os.path.join(self.root, PRODUCT)

    def assert_matches_product(self, provenance: dict) -> None:
        """One entry per card of the product, in order, holding exactly its records."""
        records = primary_records(self.product)
        self.assertEqual("".join(e["card"] for e in provenance["cards"]), "".join(records))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            cards = [c for c in fits.getheader(self.product).cards if c.image.strip()]
        self.assertEqual(len(cards), len(provenance["cards"]))
        for card, entry in zip(cards, provenance["cards"], strict=True):
            self.assertEqual(entry["card"], card.image)
            self.assertEqual(entry["keyword"].removeprefix("HIERARCH "), card.keyword)

    def assert_accounted(self, provenance: dict, source: str, cards: list[str]) -> None:
        """Each card of `source` appears once: as the product's card, overridden or dropped."""
        offered = [e for e in provenance["cards"] if e["source"] == source]
        overridden = [
            o for e in provenance["cards"] for o in e["overrode"] if o["source"] == source
        ]
        dropped = [d for d in provenance["dropped"] if d["source"] == source]
        self.assertEqual(len(offered) + len(overridden) + len(dropped), len(cards), source)
        unchanged = [e["card"] for e in offered if e["rule"] is None]
        unchanged += [o["card"] for o in overridden] + [d["card"] for d in dropped]
        self.assertLessEqual(Counter(unchanged), Counter(cards), source)


class ProvenanceOfAMergeTests(ProvenanceTestCase):
    """Overrides, a rename, a filter, reserved, structure and array keywords, a long string."""

    def setUp(self) -> None:
        super().setUp()
        self.fcs = write_fits(
            os.path.join(self.root, "fcs.fits"),
            [
                ("OBJECT", "fcs object"),
                ("EXPTIME", 1.0),
                ("HIERARCH ESO INS FILT1 NAME", "R"),
                ("DROPME", 1),
                ("DATE", "2020-01-01"),
                ("COMMENT", "from fcs"),
            ],
            extensions=[image_hdu("FCS")],
        )
        self.dcs = write_fits(
            os.path.join(self.root, "dcs.fits"),
            [
                ("OBJECT", "dcs object"),
                ("EXPTIME", 2.0),
                ("HIERARCH ESO TEL AIRM", 1.5),
                ("LONGV", "v" * 100),
                ("BUNIT", "adu"),
                ("CRPIX1", 1.0),
            ],
            data=image((4, 4)),
            extensions=[image_hdu("DCS", seed=2)],
        )
        self.spec = write_spec(
            os.path.join(self.root, "spec.json"),
            {
                "id": "DAQ.1",
                "target": {"fileId": FILE_ID},
                "sources": [
                    {
                        "type": "fitsKeywords",
                        "sourceName": "ocm",
                        "keywords": [
                            {"type": "valueKeyword", "name": "OBJECT", "value": "ocm object"},
                            {"type": "esoKeyword", "name": "TEL AIRM", "value": 1.2},
                        ],
                    },
                    file_source(
                        "fcs",
                        "fcs.fits",
                        keywordRules=[
                            {"type": "filter", "selectionPatterns": ["+vec *", "-v DROPME"]},
                            {
                                "type": "transform",
                                "selectionPatterns": ["+e INS *"],
                                "regex": "^INS ",
                                "format": "INS2 ",
                            },
                        ],
                    ),
                    file_source("dcs", "dcs.fits"),
                ],
            },
        )

    def merge(self, *args: str) -> list[dict]:
        result = run_cli(["--json", "--date", DATE, *args, self.spec])
        self.assertEqual(result.returncode, 0, result.stderr)
        return [json.loads(line) for line in result.stdout.splitlines()]

    def test_one_line_before_the_result_and_the_same_file(self) -> None:
        path = os.path.join(self.root, "provenance.json")
        lines = self.merge("--provenance", path)
        self.assertEqual([line["type"] for line in lines[-2:]], ["provenance", "result"])
        self.assertEqual(len(of_type(lines, "provenance")), 1)
        with open(path, encoding="utf-8") as stream:
            written = json.load(stream)
        self.assertEqual({"type": "provenance", **written}, lines[-2])
        self.assertEqual(sorted(os.listdir(self.root)), sorted(
            ["fcs.fits", "dcs.fits", "spec.json", PRODUCT, "provenance.json"]
        ))  # fmt: skip

    def test_card_by_card(self) -> None:
        (provenance,) = of_type(self.merge(), "provenance")
        self.assert_matches_product(provenance)
        cards = by_keyword(provenance["cards"])
        self.assertEqual(cards["OBJECT"]["source"], "ocm")
        self.assertEqual(
            [(o["source"], o["card"].rstrip()) for o in cards["OBJECT"]["overrode"]],
            [("fcs", "OBJECT  = 'fcs object'"), ("dcs", "OBJECT  = 'dcs object'")],
        )
        self.assertEqual(cards["EXPTIME"]["source"], "fcs")
        self.assertEqual([o["source"] for o in cards["EXPTIME"]["overrode"]], ["dcs"])
        self.assertEqual(cards["HIERARCH ESO TEL AIRM"]["source"], "ocm")
        self.assertEqual(
            [o["card"].rstrip() for o in cards["HIERARCH ESO TEL AIRM"]["overrode"]],
            ["HIERARCH ESO TEL AIRM = 1.5"],
        )
        renamed = cards["HIERARCH ESO INS2 FILT1 NAME"]
        self.assertEqual((renamed["source"], renamed["rule"], renamed["overrode"]), ("fcs", 1, []))
        self.assertEqual(len(cards["LONGV"]["card"]), 160)  # two records, joined
        self.assertEqual((cards["COMMENT"]["source"], cards["COMMENT"]["rule"]), ("fcs", None))
        for keyword in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND", "ARCFILE", "ORIGFILE", "DATE",
                        "LONGSTRN", "CHECKSUM", "DATASUM"):  # fmt: skip
            self.assertEqual(cards[keyword]["source"], MERGER, keyword)
        self.assertTrue(all(e["rule"] is None for e in provenance["cards"] if e is not renamed))

    def test_dropped_cards(self) -> None:
        (provenance,) = of_type(self.merge(), "provenance")
        dropped = {
            (d["source"], d["keyword"]): (d["reason"], d["rule"]) for d in provenance["dropped"]
        }
        self.assertEqual(dropped[("fcs", "DROPME")], ("filter", 0))
        self.assertEqual(dropped[("fcs", "DATE")], ("reserved", None))
        self.assertEqual(dropped[("fcs", "CHECKSUM")], ("reserved", None))
        self.assertEqual(dropped[("dcs", "BUNIT")], ("array", None))
        self.assertEqual(dropped[("dcs", "CRPIX1")], ("array", None))
        for source in ("fcs", "dcs"):
            for keyword in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND"):
                self.assertEqual(dropped[(source, keyword)], ("structure", None))
        self.assertEqual(dropped[("dcs", "NAXIS1")], ("structure", None))
        self.assertNotIn("ocm", {d["source"] for d in provenance["dropped"]})

    def test_every_source_card_accounted_for_once(self) -> None:
        (provenance,) = of_type(self.merge(), "provenance")
        self.assert_accounted(provenance, "fcs", source_cards(self.fcs))
        self.assert_accounted(provenance, "dcs", source_cards(self.dcs))
        self.assertEqual(
            len([e for e in provenance["cards"] if e["source"] == "ocm"])
            + len([o for e in provenance["cards"] for o in e["overrode"] if o["source"] == "ocm"]),
            2,
        )

    def test_sources_described(self) -> None:
        (provenance,) = of_type(self.merge(), "provenance")
        self.assertEqual(
            provenance["sources"],
            {
                "ocm": {"type": "fitsKeywords", "priority": 0},
                "fcs": {"type": "fitsFile", "priority": 1, "location": "fcs.fits",
                        "path": self.fcs, "hdu": 0},
                "dcs": {"type": "fitsFile", "priority": 2, "location": "dcs.fits",
                        "path": self.dcs, "hdu": 0},
                MERGER: {"type": "merger"},
            },
        )  # fmt: skip

    def test_dry_run_prints_the_planned_provenance(self) -> None:
        path = os.path.join(self.root, "planned.json")
        planned = self.merge("--dry-run", "--provenance", path)
        self.assertEqual([line["type"] for line in planned], ["alert", "plan", "provenance"])
        self.assertFalse(os.path.exists(self.product))
        (final,) = of_type(self.merge(), "provenance")
        with open(path, encoding="utf-8") as stream:
            self.assertEqual({"type": "provenance", **json.load(stream)}, planned[-1])
        checksums = ("CHECKSUM", "DATASUM")
        for before, after in zip(planned[-1]["cards"], final["cards"], strict=True):
            if before["keyword"] not in checksums:
                self.assertEqual(before, after)
        self.assertEqual(planned[-1]["dropped"], final["dropped"])
        self.assertEqual(by_keyword(planned[-1]["cards"])["CHECKSUM"]["card"][11:27], "0" * 16)

    def test_file_without_json(self) -> None:
        path = os.path.join(self.root, "provenance.json")
        with open(path, "w") as stream:
            stream.write("old")
        inode = os.stat(path).st_ino
        result = run_cli(["--date", DATE, "--provenance", path, self.spec])
        self.assertEqual((result.returncode, result.stdout), (0, self.product + "\n"))
        with open(path, encoding="utf-8") as stream:
            provenance = json.load(stream)
        self.assert_matches_product(provenance)
        self.assertNotEqual(os.stat(path).st_ino, inode)  # replaced by a rename, not rewritten
        self.assertEqual([n for n in os.listdir(self.root) if "tmp" in n], [])

    def test_refused_provenance_paths_write_nothing(self) -> None:
        cases = {
            self.product: "is the product",
            self.fcs: "is the file of source 'fcs'",
            os.path.join(self.root, "missing", "p.json"): "does not exist",
            self.root: "is a directory",
        }
        for path, message in cases.items():
            result = run_cli(["--json", "--provenance", path, self.spec])
            self.assertEqual(result.returncode, 2, path)
            self.assertIn(message, json.loads(result.stdout.splitlines()[-1])["message"])
            self.assertFalse(os.path.exists(self.product), path)


class InPlaceTargetProvenanceTests(ProvenanceTestCase):
    def test_target_structure_and_overrides(self) -> None:
        target = write_fits(
            os.path.join(self.root, "target.fits"),
            [("OBJECT", "target"), ("TARGONLY", 3), ("BZERO", 0), ("HISTORY", "target")],
            data=image((3, 5), dtype="i2"),
            extensions=[image_hdu("T")],
        )
        source = write_fits(os.path.join(self.root, "s.fits"), [("OBJECT", "source")])
        spec = write_spec(
            os.path.join(self.root, "spec.json"),
            {
                "id": "DAQ.2",
                "target": {"fileId": FILE_ID, "source": file_source("tgt", "target.fits")},
                "sources": [file_source("src", "s.fits")],
            },
        )
        code, lines = run_merge(["--date", DATE, "-o", self.product, spec])
        self.assertEqual(code, 0, lines)
        (provenance,) = of_type(lines, "provenance")
        self.assert_matches_product(provenance)
        cards = by_keyword(provenance["cards"])
        for keyword in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "BZERO"):
            self.assertEqual(cards[keyword]["source"], "tgt", keyword)
        self.assertEqual(cards["EXTEND"]["source"], MERGER)
        self.assertEqual(cards["OBJECT"]["source"], "src")
        self.assertEqual([o["source"] for o in cards["OBJECT"]["overrode"]], ["tgt"])
        self.assertEqual((cards["TARGONLY"]["source"], cards["HISTORY"]["source"]), ("tgt", "tgt"))
        dropped = {(d["source"], d["keyword"]): d["reason"] for d in provenance["dropped"]}
        self.assertEqual(dropped[("tgt", "EXTEND")], "structure")
        self.assertNotIn(("tgt", "BITPIX"), dropped)
        self.assertEqual(provenance["sources"]["tgt"]["target"], True)
        self.assert_accounted(provenance, "tgt", source_cards(target))
        self.assert_accounted(provenance, "src", source_cards(source))


# --- Property: random sources, checked against a model of docs/merge.md's priority rules.

VALUE_NAMES = ("OBJECT", "EXPTIME", "AIRMASS", "K1", "K2")
ESO_NAMES = ("DET DIT", "INS FILT1 ID", "TEL AIRM", "OBS NAME", "ZZZ X")
keyword = st.one_of(
    st.tuples(st.just("v"), st.sampled_from(VALUE_NAMES), st.integers(-99, 99)),
    st.tuples(st.just("e"), st.sampled_from(ESO_NAMES), st.integers(-99, 99)),
    st.tuples(st.just("c"), st.sampled_from(("COMMENT", "HISTORY")), st.integers(0, 9)),
)
source_strategy = st.fixed_dictionaries(
    {
        "file": st.booleans(),
        "keywords": st.lists(keyword, max_size=8),
        "excluded": st.lists(st.sampled_from(VALUE_NAMES), max_size=2, unique=True),
    }
)
case_strategy = st.fixed_dictionaries(
    {
        "sources": st.lists(source_strategy, min_size=1, max_size=4),
        "target": st.none() | st.lists(keyword, max_size=6),
    }
)


def _identity(item: tuple[str, str, int]) -> tuple[str, str]:
    return item[0], item[1]


def _keyword_name(kind: str, name: str) -> str:
    return f"HIERARCH ESO {name}" if kind == "e" else name


def _user(items: list[tuple[str, str, int]], excluded: list[str]) -> list[tuple[str, str, int]]:
    return [item for item in items if not (item[0] == "v" and item[1] in excluded)]


def expected_user_cards(case: dict) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(keyword, (source, card), overridden (source, card)s) in product order, per
    docs/merge.md: the first source wins, a later duplicate within a source wins
    over an earlier one, an in-place target is the base every source overrides;
    a keyword keeps its first position (target first); value keywords, then ESO
    keywords by category and name, then commentary in priority order."""
    offers: list[tuple[str, int, list[tuple[str, str, int]]]] = []
    if case["target"] is not None:
        offers.append(("tgt", len(case["sources"]), case["target"]))
    for rank, source in enumerate(case["sources"]):
        offers.append((f"s{rank}", rank, _user(source["keywords"], source["excluded"])))
    chains: dict[tuple[str, str], list[tuple[int, int, tuple[str, str]]]] = {}
    commentary = []
    order = 0
    for name, rank, items in offers:
        for item, record in zip(items, _records(items), strict=True):
            order += 1
            if item[0] == "c":
                commentary.append((item[1], (name, record), []))
            else:
                chains.setdefault(_identity(item), []).append((rank, -order, (name, record)))
    placed = []
    for (kind, key), chain in chains.items():
        chain.sort()
        placed.append((kind, key, chain[0][2], [entry[2] for entry in chain[1:]]))
    values = [(_keyword_name(k, n), s, o) for k, n, s, o in placed if k == "v"]
    eso = sorted((p for p in placed if p[0] == "e"), key=lambda p: _eso_key(p[1]))
    return values + [(_keyword_name(k, n), s, o) for k, n, s, o in eso] + commentary


def _eso_key(name: str) -> tuple[int, str]:
    category = name.split(" ")[0]
    order = ESO_CATEGORY_ORDER
    return (order.index(category) if category in order else len(order)), name


def _records(items: list[tuple[str, str, int]]) -> list[str]:
    """Header records written by hand: astropy would regroup COMMENT and HISTORY cards."""
    records = []
    for kind, name, value in items:
        if kind == "c":
            records.append(f"{name} text {value}")
        elif kind == "e":
            records.append(f"HIERARCH ESO {name} = {value}")
        else:
            records.append(f"{name:<8}= {value:>20}")
    return records


def _write_source(path: str, items: list[tuple[str, str, int]], data: bool = False) -> None:
    """A FITS file with those primary keywords; with `data`, a 3 x 2 16-bit array."""
    structure = ["SIMPLE  =                    T"]
    if data:
        structure += [f"{k:<8}= {v:>20}" for k, v in
                      (("BITPIX", 16), ("NAXIS", 2), ("NAXIS1", 3), ("NAXIS2", 2))]  # fmt: skip
    else:
        structure += ["BITPIX  =                    8", "NAXIS   =                    0"]
    text = "".join(r.ljust(80) for r in [*structure, *_records(items), "END"])
    payload = text.encode("ascii") + b" " * (-len(text) % 2880)
    if data:
        payload += bytes(range(12)) + bytes(2880 - 12)
    with open(path, "wb") as stream:
        stream.write(payload)


def _spec_keyword(kind: str, name: str, value: int) -> dict:
    if kind == "c":
        return {"type": "literalKeyword", "value": f"{name} text {value}"}
    return {"type": "valueKeyword" if kind == "v" else "esoKeyword", "name": name, "value": value}


class ProvenanceProperties(SynchronousTestCase):
    @settings(
        max_examples=40,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(case_strategy)
    def test_entries_follow_the_priority_rules(self, case: dict) -> None:
        root = tempfile.mkdtemp(prefix="dpmd-provenance-")
        self.addCleanup(shutil.rmtree, root)
        sources: list[dict[str, Any]] = []
        for rank, source in enumerate(case["sources"]):
            rules = [{"type": "filter", "selectionPatterns": ["+vec *"] + [
                f"-v {name}" for name in source["excluded"]]}]  # fmt: skip
            if source["file"]:
                _write_source(os.path.join(root, f"s{rank}.fits"), source["keywords"])
                sources.append(file_source(f"s{rank}", f"s{rank}.fits", keywordRules=rules))
            else:
                keywords = [_spec_keyword(*item) for item in source["keywords"]]
                sources.append({"type": "fitsKeywords", "sourceName": f"s{rank}",
                                "keywords": keywords, "keywordRules": rules})  # fmt: skip
        target: dict[str, Any] = {"fileId": FILE_ID}
        if case["target"] is not None:
            _write_source(os.path.join(root, "t.fits"), case["target"], data=True)
            target["source"] = file_source("tgt", "t.fits")
        spec = write_spec(
            os.path.join(root, "spec.json"), {"id": "P", "target": target, "sources": sources}
        )
        product = os.path.join(root, PRODUCT)
        code, lines = run_merge(["--date", DATE, "-o", product, spec])
        self.assertEqual(code, 0, lines)
        (provenance,) = of_type(lines, "provenance")

        records = primary_records(product)
        self.assertEqual("".join(entry["card"] for entry in provenance["cards"]), "".join(records))
        with fits.open(product) as hdus:
            cards = [c for c in hdus[0].header.cards if c.image.strip()]
        self.assertEqual(
            [entry["keyword"].removeprefix("HIERARCH ") for entry in provenance["cards"]],
            [card.keyword for card in cards],
        )
        structure = ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2")
        user = [
            (
                entry["keyword"],
                (entry["source"], entry["card"].rstrip()),
                [(o["source"], o["card"].rstrip()) for o in entry["overrode"]],
            )
            for entry in provenance["cards"]
            if entry["source"] != MERGER
            and not (entry["source"] == "tgt" and entry["keyword"] in structure)
        ]
        self.assertEqual(user, expected_user_cards(case))
        excluded = [
            (f"s{rank}", name, 0)
            for rank, source in enumerate(case["sources"])
            for kind, name, _ in source["keywords"]
            if kind == "v" and name in source["excluded"]
        ]
        filtered = [(d["source"], d["keyword"], d["rule"]) for d in provenance["dropped"]
                    if d["reason"] == "filter"]  # fmt: skip
        self.assertEqual(filtered, excluded)
