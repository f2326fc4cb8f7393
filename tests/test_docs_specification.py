"""docs/specification.md: every example is its file, validates, and plans what the page says.

The page marks its blocks with HTML comments: ``<!-- example: NAME.json -->`` before a
``json`` block that must be ``docs/specification/NAME.json`` byte for byte, ``<!-- plan:
NAME.json -->`` before a ``text`` block of what ``/daq/CheckDaq`` plans for it (``HDU n NAME
SOURCE`` lines: every HDU in order; ``KEYWORD = VALUE  from SOURCE`` or ``COMMENTARY CARD
from SOURCE`` lines, with ``(overrides A, B)`` and ``(renamed by keywordRules[N])`` when so,
in header order; ``no KEYWORD`` lines), ``<!-- sources -->`` before the Python script that
writes the examples' files, ``<!-- server configuration -->`` before the server's YAML,
``<!-- manifest -->`` before a release manifest and ``<!-- spec new output -->`` before what
``dpmctl spec new`` prints.  The script and the configuration are used as written: the test
runs the script in a real server's dataroot (astropy writes the files) and starts the server
with that configuration.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astropy.io import fits
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

import dpmd
from dpmd.client.models import PlannedHdu
from dpmd.client.specification import new_specification
from dpmd.config.load import read_config_file
from tests.fitsfactory import write_fits
from tests.rpcclient import start_server
from tests.test_doc_examples import same_shape

ROOT = Path(dpmd.__file__).parent.parent
PAGE = ROOT / "docs" / "specification.md"
EXAMPLES = ROOT / "docs" / "specification"
MARKER = re.compile(r"<!--\s*(?P<kind>[a-z][a-z ]*?)(?::\s*(?P<name>\S+))?\s*-->\s*\Z")
FENCE = re.compile(r"```(?P<language>\w*)\s*\Z")
HDU_LINE = re.compile(r"HDU (?P<index>\d+)\s+(?P<name>\S+)\s+(?P<source>\S+)\Z")
CARD_LINE = re.compile(
    r"(?P<card>.*?\S)\s{2,}from (?P<source>\S+)"
    r"(?: \(overrides (?P<overrode>[^)]*)\))?"
    r"(?: \(renamed by keywordRules\[(?P<rule>\d+)\]\))?\Z"
)
SHOWN_SOURCES = "/data/raw"
"""The folder of the files in the page's ``dpmctl spec new`` example."""


@dataclass(frozen=True)
class Block:
    kind: str
    name: str | None
    language: str
    text: str
    line: int


def marked_blocks(text: str) -> list[Block]:
    """Each marker and the fenced block right after it (blank lines may come between)."""
    lines = text.splitlines()
    blocks = []
    for number, line in enumerate(lines):
        marker = MARKER.match(line.strip())
        if marker is None:
            continue
        start = number + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        fence = FENCE.match(lines[start]) if start < len(lines) else None
        if fence is None:
            raise AssertionError(f"specification.md:{number + 1}: a marker not before a block")
        end = lines.index("```", start + 1)
        body = "\n".join(lines[start + 1 : end]) + "\n"
        blocks.append(Block(marker["kind"], marker["name"], fence["language"], body, start + 2))
    return blocks


@dataclass(frozen=True)
class Card:
    text: str
    source: str
    overrode: tuple[str, ...]
    rule: int | None

    @property
    def keyword(self) -> str:
        name, equals, _ = self.text.partition(" = ")
        return name if equals else self.text.split(" ", 1)[0]

    @property
    def is_commentary(self) -> bool:
        return " = " not in self.text


@dataclass
class Plan:
    hdus: list[tuple[int, str, str]] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)


def parse_plan(text: str) -> Plan:
    plan = Plan()
    for line in text.splitlines():
        if hdu := HDU_LINE.match(line):
            plan.hdus.append((int(hdu["index"]), hdu["name"], hdu["source"]))
        elif line.startswith("no "):
            plan.absent.append(line[3:])
        elif card := CARD_LINE.match(line):
            overrode = tuple(card["overrode"].split(", ")) if card["overrode"] else ()
            rule = int(card["rule"]) if card["rule"] else None
            plan.cards.append(Card(card["card"], card["source"], overrode, rule))
        else:
            raise AssertionError(f"a plan line that says nothing the test knows: {line!r}")
    return plan


def shown_value(text: str) -> Any:
    """A value as the page writes it: a FITS string, T or F, an integer or a real."""
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'").rstrip()
    if text in ("T", "F"):
        return text == "T"
    return int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)


def same_value(shown: Any, planned: Any) -> bool:
    return type(shown) is type(planned) and shown == planned


def plan_problems(plan: Plan, answer: dict[str, Any]) -> list[str]:
    """Where the dry run's answer differs from what the page says; [] when it does not."""
    if not answer["ok"]:
        return [f"not ok: {answer['problems']}"]
    problems = []
    shown_as = [PlannedHdu.from_json(hdu) for hdu in answer["hdus"]]  # as dpmctl check shows
    hdus = [(hdu.index, hdu.name, hdu.source) for hdu in shown_as]
    if plan.hdus and hdus != plan.hdus:
        problems.append(f"HDUs are {hdus}, the page says {plan.hdus}")
    header = answer["header"]
    positions = []
    for card in plan.cards:
        if card.is_commentary:
            found = [i for i, e in enumerate(header) if e["card"].rstrip() == card.text]
        else:
            found = [i for i, e in enumerate(header) if e["keyword"] == card.keyword]
        if len(found) != 1:
            problems.append(f"{card.text!r}: {len(found)} such cards in the planned header")
            continue
        entry = header[found[0]]
        positions.append(found[0])
        if not card.is_commentary:
            planned = fits.Card.fromstring(entry["card"]).value
            shown = shown_value(card.text.partition(" = ")[2])
            if not same_value(shown, planned):
                problems.append(f"{card.text!r}: planned {entry['card'].rstrip()!r}")
        overrode = tuple(other["source"] for other in entry["overrode"])
        got = (entry["source"], overrode, entry["rule"])
        if got != (card.source, card.overrode, card.rule):
            problems.append(f"{card.text!r}: source, overrode, rule are {got}")
    if positions != sorted(positions):
        problems.append("the cards are not in the planned header's order")
    keywords = {entry["keyword"] for entry in header}
    problems += [f"{name!r} is planned" for name in plan.absent if name in keywords]
    return problems


class PageTests(SynchronousTestCase):
    """The page and the example files cannot drift apart."""

    def setUp(self) -> None:
        self.blocks = marked_blocks(PAGE.read_text(encoding="utf-8"))

    def named(self, kind: str) -> dict[str, Block]:
        found = [block for block in self.blocks if block.kind == kind]
        names = [block.name for block in found]
        self.assertEqual(len(names), len(set(names)), f"a {kind} shown twice: {names}")
        return {str(block.name): block for block in found}

    def test_every_example_file_is_shown_as_it_is_with_its_plan(self) -> None:
        examples, plans = self.named("example"), self.named("plan")
        files = {path.name for path in EXAMPLES.glob("*.json")}
        self.assertEqual(set(examples), files)
        self.assertEqual(set(plans), files)
        self.assertGreaterEqual(len(files), 10)
        for name, block in examples.items():
            self.assertEqual(block.language, "json", name)
            self.assertEqual(block.text, (EXAMPLES / name).read_text(encoding="utf-8"), name)
            json.loads(block.text)
        for block in plans.values():
            parse_plan(block.text)  # every line is one the test checks

    def test_the_other_marked_blocks_are_there_once(self) -> None:
        kinds = [block.kind for block in self.blocks if block.name is None]
        self.assertEqual(
            sorted(kinds), ["manifest", "server configuration", "sources", "spec new output"]
        )

    def test_the_shown_spec_new_output_is_what_it_prints(self) -> None:
        [shown] = [block for block in self.blocks if block.kind == "spec new output"]
        document = json.loads(shown.text)
        folder = Path(self.mktemp()).absolute()
        files = [
            write_fits(str(folder / Path(source["location"]).name))
            for source in document["sources"][1:]
        ]
        made = new_specification(files, document["id"])
        text = json.dumps(made, indent=2) + "\n"
        self.assertEqual(text.replace(str(folder), SHOWN_SOURCES), shown.text)


class PlanCheckerTests(SynchronousTestCase):
    """The checker finds what differs (else the page's plans would prove nothing)."""

    ANSWER = {
        "ok": True,
        "problems": [],
        "hdus": [{"index": 0, "origin": "(new)", "kind": "PRIMARY", "extname": None,
                  "header_size": 2880, "data_size": 0}],
        "header": [
            {"keyword": "OBJECT", "card": "OBJECT  = 'NGC 1365'", "source": "ocm",
             "overrode": [{"source": "dcs", "card": "OBJECT  = 'SKY'"}], "rule": None},
            {"keyword": "HIERARCH ESO DET DIT", "card": "HIERARCH ESO DET DIT = 10.0",
             "source": "dcs", "overrode": [], "rule": 1},
            {"keyword": "HISTORY", "card": "HISTORY made   ", "source": "dcs",
             "overrode": [], "rule": None},
        ],
    }  # fmt: skip

    def problems(self, text: str) -> list[str]:
        return plan_problems(parse_plan(text), self.ANSWER)

    def test_a_plan_that_says_what_is_planned(self) -> None:
        self.assertEqual(self.problems(
            "HDU 0  PRIMARY  (new)\n"
            "OBJECT = 'NGC 1365'  from ocm (overrides dcs)\n"
            "HIERARCH ESO DET DIT = 10.0  from dcs (renamed by keywordRules[1])\n"
            "HISTORY made  from dcs\n"
            "no EXPTIME\n"), [])  # fmt: skip

    def test_each_difference_is_found(self) -> None:
        for text in [
            "HDU 0  PRIMARY  dcs\n",
            "HDU 0  PRIMARY  (new)\nHDU 1  CHIP1  dcs\n",
            "OBJECT = 'SKY'  from ocm (overrides dcs)\n",
            "OBJECT = 'NGC 1365'  from dcs (overrides dcs)\n",
            "OBJECT = 'NGC 1365'  from ocm\n",
            "HIERARCH ESO DET DIT = 10  from dcs (renamed by keywordRules[1])\n",
            "HIERARCH ESO DET DIT = 10.0  from dcs\n",
            "HISTORY other  from dcs\n",
            "HISTORY made  from dcs\nOBJECT = 'NGC 1365'  from ocm (overrides dcs)\n",
            "no OBJECT\n",
        ]:
            self.assertNotEqual(self.problems(text), [], text)
        self.assertEqual(
            plan_problems(Plan(), {**self.ANSWER, "ok": False, "problems": ["x"]}),
            ["not ok: ['x']"],
        )
        self.assertRaises(AssertionError, parse_plan, "OBJECT is 'NGC 1365'\n")


class AgainstTheServerTests(TestCase):
    """Every example through ``/daq/CheckDaq`` on the page's files; one released for real."""

    def setUp(self) -> None:
        self.blocks = marked_blocks(PAGE.read_text(encoding="utf-8"))
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()
        [script] = self.only("sources")
        made = subprocess.run([sys.executable, "-c", script.text], cwd=self.root,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        self.assertEqual((made.returncode, made.stderr), (0, ""))
        [configuration] = self.only("server configuration")
        config_file = self.root / "dpmd.yaml"
        config_file.write_text(configuration.text)
        self.configuration = read_config_file(config_file)

    def only(self, kind: str) -> list[Block]:
        return [block for block in self.blocks if block.kind == kind]

    @inlineCallbacks
    def test_every_example_plans_what_the_page_says(self) -> Any:
        _, caller = yield start_server(self, self.root, **self.configuration)
        plans = {block.name: block for block in self.only("plan")}
        failures = {}
        for path in sorted(EXAMPLES.glob("*.json")):
            answer = yield caller.call("/daq/CheckDaq", path.read_text(encoding="utf-8"))
            problems = plan_problems(parse_plan(plans[path.name].text), answer)
            if problems:
                failures[path.name] = problems
        if failures:
            self.fail("\n".join(f"{name}: {problem}" for name, problems in failures.items()
                                 for problem in problems))  # fmt: skip

    @inlineCallbacks
    def test_the_smallest_example_is_released_with_the_manifest_shown(self) -> Any:
        _, caller = yield start_server(self, self.root, **self.configuration)
        text = (EXAMPLES / "minimal.json").read_text(encoding="utf-8")
        file_id = json.loads(text)["target"]["fileId"]
        yield caller.call("/daq/QueueDaq", text)
        final = yield caller.wait_for(json.loads(text)["id"], "Completed")
        product = self.root / "released" / f"{file_id}.fits"
        self.assertEqual(final["result"], str(product))
        with fits.open(product, checksum=True) as hdus:
            self.assertEqual([hdu.name for hdu in hdus], ["PRIMARY", "CHIP1", "CHIP2"])
        manifest = json.loads((self.root / "released" / f"{file_id}.fits.json").read_text())
        [shown] = self.only("manifest")
        expected = json.loads(shown.text)
        self.assertTrue(same_shape(expected, manifest), manifest)
        self.assertTrue(same_shape(expected["sources"][0], manifest["sources"][0]), manifest)
        self.assertEqual(manifest["product"]["name"], f"{file_id}.fits")
