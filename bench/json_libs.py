"""Benchmark: the JSON and specification-checking libraries, against what dpmd uses.

    python bench/json_libs.py [--rounds 5]

What it measures, each as the time of the candidate over dpmd's own in the
same round (lower is better), then the microseconds a QueueDaq or a status call
would save:

1. **Decoding a request line**: ``dpmd.encoding.decode`` (``json``'s decoder,
   the wire's checks) against ``orjson.loads`` and ``msgspec.json.decode``,
   for a ``GetDaqStatus`` line and a ``QueueDaq`` line.
2. **Encoding**: ``dpmd.encoding.encode`` against ``orjson.dumps`` and
   ``msgspec.json.encode``, for one DAQ status and for ``GetActiveDaqs`` of
   10,000 (which dpmd does not encode per call: it joins statuses kept encoded).
3. **Checking a specification**: ``parse_specification`` (hostile-input checks,
   the schema compiled by fastjsonschema, the model and the checks a schema
   cannot express) against ``msgspec.json.decode`` into typed structures that
   mirror the schema's shape (``dpmd.spec.shape``: structure, types, lengths,
   patterns), which ``parse_specification`` now asks before the compiled
   schema; the model and the checks a schema cannot express still run after it.

Not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.core import request_line, small_spec  # noqa: E402
from dpmd.encoding import decode, encode  # noqa: E402
from dpmd.spec import parse_specification, prepare_checks  # noqa: E402
from dpmd.spec.shape import SpecificationShape  # noqa: E402


def per_call(function: Callable[[], Any], number: int) -> float:
    """Microseconds a call, the best of three runs of ``number`` calls."""
    return min(timeit.repeat(function, number=number, repeat=3)) / number * 1e6


Case = tuple[str, Callable[[], Any], dict[str, Callable[[], Any]], int]
"""A label, dpmd's way, the candidates' ways, and how many calls a timing makes."""


def decoding(label: str, line: bytes) -> Case:
    return (label, lambda: decode(line),
            {"orjson": lambda: orjson.loads(line), "msgspec": lambda: msgspec.json.decode(line)},
            20_000)  # fmt: skip


def encoding(label: str, value: Any, number: int) -> Case:
    return (label, lambda: encode(value),
            {"orjson": lambda: orjson.dumps(value), "msgspec": lambda: msgspec.json.encode(value)},
            number)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    prepare_checks()
    status_line = (b'{"jsonrpc": "2.0", "id": 17, "method": "/daq/GetDaqStatus", '
                   b'"params": ["COLD.0.0"]}')  # fmt: skip
    queue_line = request_line(5, small_spec("BENCH.1")).strip()
    spec_text = small_spec("BENCH.1")
    status = {"id": "COLD.0.0", "state": "Scheduled", "substate": "Scheduled", "error": False,
              "alerts": [], "message": "queued", "timestamp": 1.7e9, "result": ""}  # fmt: skip
    active = [dict(status, id=f"COLD.{n}") for n in range(10_000)]
    typed = msgspec.json.Decoder(SpecificationShape)
    assert typed.decode(spec_text).id == parse_specification(spec_text).id
    cases = [
        decoding("decode a GetDaqStatus line", status_line),
        decoding("decode a QueueDaq line", queue_line),
        encoding("encode a DAQ status", status, 20_000),
        encoding("encode 10,000 statuses", active, 5),
        ("check a specification", lambda: parse_specification(spec_text),
         {"msgspec (shape only)": lambda: typed.decode(spec_text)}, 2_000),
    ]  # fmt: skip
    print(f"Python {sys.version.split()[0]}; orjson {orjson.__version__}, "
          f"msgspec {msgspec.__version__}; {args.rounds} rounds\n")
    for label, ours, candidates, number in cases:
        base = [per_call(ours, number) for _ in range(args.rounds)]
        print(f"{label}: dpmd {statistics.median(base):.2f} µs")
        for name, candidate in candidates.items():
            times = [per_call(candidate, number) for _ in range(args.rounds)]
            ratios = [mine / theirs for mine, theirs in zip(times, base, strict=True)]
            saved = statistics.median(base) - statistics.median(times)
            print(f"   {name:22} {statistics.median(times):9.2f} µs   ratio median "
                  f"{statistics.median(ratios):.2f}, worst {max(ratios):.2f}; "
                  f"saves {saved:.2f} µs a call")  # fmt: skip
    print("\n(encoded once per change, a status is joined, not encoded, by GetActiveDaqs)")


if __name__ == "__main__":
    main()
