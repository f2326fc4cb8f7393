"""What QueueDaq checks of a specification: as a function, and as a child program.

The checks (hostile input, the schema, the model, the server's own rules on
names, locations and receivers) are pure Python and cost a few hundred
microseconds of processor a DAQ.  When QueueDaqs arrive faster than they are
committed, that is most of what the reactor's thread would spend on each, so
``python -m dpmd.daq.admission.vetting`` runs them in a child, on the other core (see
``dpmd.daq.admission.validator``).  It reads requests from stdin, each a decimal byte
count, a newline and that many bytes of specification, and answers each with
one JSON line, in order, until stdin closes; the answers to the requests
that arrived together are written together (at least every millisecond).
Its first line, before any answer, is ``READY``: its checks are loaded and
compiled, and the server may send it the work of a burst.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from dpmd.daq.admission.rules import ReceiverRules, server_problems
from dpmd.encoding import encode
from dpmd.spec import SpecificationError, parse_specification, prepare_checks


@dataclass(frozen=True)
class Rules:
    """The part of the configuration the checks read, as the child is given it."""

    release_allowed: tuple[Path, ...]
    workspace: Path

    def to_json(self) -> str:
        return json.dumps({"allowed": [str(path) for path in self.release_allowed],
                           "workspace": str(self.workspace)})  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> Rules:
        settings = json.loads(text)
        return cls(tuple(Path(path) for path in settings["allowed"]),
                   Path(settings["workspace"]))  # fmt: skip


def vet(text: bytes, rules: ReceiverRules) -> dict[str, Any]:
    """What the server needs of a specification it can take (``id``, ``file_id`` and
    its file ``sources`` as ``[name, location]`` pairs), or ``refused``: the error
    message, with the ``id`` when the specification has a valid one."""
    try:
        specification = parse_specification(text)
    except SpecificationError as error:
        return {"refused": f"invalid specification: {error}"}
    problems = server_problems(specification, rules)
    if problems:
        return {"refused": f"invalid specification: {'; '.join(problems)}",
                "id": specification.id}  # fmt: skip
    return {
        "id": specification.id,
        "file_id": specification.file_id,
        "sources": [[source.source_name, source.location]
                    for source in specification.file_sources()],
    }  # fmt: skip


READY = b'{"ready":true}'
"""The child's first line: it can check specifications at full speed from now on."""

WRITE_EVERY = 0.001
"""The longest the child keeps answers it has made (seconds)."""


class Chunks(Protocol):
    """A stream read by what has arrived (``sys.stdin.buffer``, ``io.BytesIO``)."""

    def read1(self, size: int = -1, /) -> bytes: ...


def request(text: bytes) -> bytes:
    """A specification framed for the child's stdin."""
    return b"%d\n%s" % (len(text), text)


def serve(requests: Chunks, answers: BinaryIO, rules: ReceiverRules,
          write_every: float = WRITE_EVERY) -> None:  # fmt: skip
    """Answer every request on ``requests`` until it ends.

    The answers to the requests that arrive together are written together,
    at least every ``write_every`` seconds: the reactor reads several at
    once instead of waking for each, and stores the first of a burst while
    the child checks the rest.
    """
    pending = bytearray()
    while chunk := requests.read1(1 << 16):
        pending += chunk
        done: list[bytes] = []
        since = time.monotonic()
        for text in _complete_requests(pending):
            done.append(encode(vet(text, rules)) + b"\n")
            if time.monotonic() - since >= write_every:
                _write(answers, done)
                done, since = [], time.monotonic()
        if done:
            _write(answers, done)


def _write(answers: BinaryIO, lines: list[bytes]) -> None:
    answers.write(b"".join(lines))
    answers.flush()


def _complete_requests(pending: bytearray) -> list[bytes]:
    """Take the whole requests at the start of ``pending`` out of it."""
    texts = []
    start = 0
    while (newline := pending.find(b"\n", start)) != -1:
        end = newline + 1 + int(pending[start:newline])
        if end > len(pending):
            break
        texts.append(bytes(pending[newline + 1 : end]))
        start = end
    del pending[:start]
    return texts


def main() -> None:
    prepare_checks()
    sys.stdout.buffer.write(READY + b"\n")
    sys.stdout.buffer.flush()
    with open(sys.stdin.fileno(), "rb", closefd=False) as requests:
        serve(requests, sys.stdout.buffer, Rules.from_json(sys.argv[1]))


if __name__ == "__main__":
    main()
