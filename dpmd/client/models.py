"""The results of dpmd's extension methods, as typed objects for client programs.

``dpmd.model`` holds the ICD's structures, which the server shares; these
are the answers of the methods dpmd adds (provenance, timeline, dry run,
workspace audit).  Each ``from_json`` checks the members it reads, so an
answer of the wrong shape fails its call with a ``ProtocolError`` naming
what was wrong instead of surfacing later as a ``KeyError``; members it does
not know are ignored, as the contract asks of clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _member(obj: Any, name: str, *types: type, optional: bool = False) -> Any:
    if not isinstance(obj, dict):
        raise TypeError(f"expected an object, got {type(obj).__name__}")
    if name not in obj:
        if optional:
            return None
        raise ValueError(f"missing member {name!r}")
    value = obj[name]
    if value is None and optional:
        return None
    # bool is an int in Python; the wire keeps them apart.
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        wanted = " or ".join(t.__name__ for t in types)
        raise TypeError(f"member {name!r} must be {wanted}, not {type(value).__name__}")
    return value


def _time(obj: Any, name: str) -> float | None:
    value = _member(obj, name, int, float, optional=True)
    return None if value is None else float(value)


def _list(obj: Any, name: str) -> list[Any]:
    return list(_member(obj, name, list))


@dataclass(frozen=True)
class Override:
    """A card of the same keyword that lost to the one in the header."""

    source: str
    card: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "card": self.card}

    @classmethod
    def from_json(cls, obj: Any) -> Override:
        return cls(_member(obj, "source", str), _member(obj, "card", str))


@dataclass(frozen=True)
class CardOrigin:
    """Where one card of a product's primary header came from (``GetDaqProvenance``).

    ``card`` is the header's text (80 characters a record; a card continued
    on ``CONTINUE`` records is its records joined); ``overrode`` is ordered
    by priority, highest first; ``rule`` is the index, in its source's
    ``keywordRules``, of the rule that renamed the card.
    """

    keyword: str
    card: str
    source: str
    overrode: tuple[Override, ...] = ()
    rule: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "keyword": self.keyword,
            "card": self.card,
            "source": self.source,
            "overrode": [other.to_json() for other in self.overrode],
            "rule": self.rule,
        }

    @classmethod
    def from_json(cls, obj: Any) -> CardOrigin:
        return cls(
            keyword=_member(obj, "keyword", str),
            card=_member(obj, "card", str),
            source=_member(obj, "source", str),
            overrode=tuple(Override.from_json(item) for item in _list(obj, "overrode")),
            rule=_member(obj, "rule", int, optional=True),
        )


def card_origins(result: Any) -> list[CardOrigin]:
    if not isinstance(result, list):
        raise TypeError(f"expected an array, got {type(result).__name__}")
    return [CardOrigin.from_json(item) for item in result]


@dataclass(frozen=True)
class StageRun:
    """A stage's last run for one DAQ, as the timeline gives it."""

    attempts: int
    started_at: float | None
    ended_at: float | None
    last_error: str | None = None
    bytes: int | None = None
    peak_rss_bytes: int | None = None
    """The most memory one of the run's child processes held; None when unknown."""

    @property
    def seconds(self) -> float | None:
        """How long the last run took; ``None`` while it runs (or if it never started)."""
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "last_error": self.last_error,
            "bytes": self.bytes,
            "peak_rss_bytes": self.peak_rss_bytes,
        }

    @classmethod
    def from_json(cls, obj: Any) -> StageRun:
        return cls(
            attempts=_member(obj, "attempts", int),
            started_at=_time(obj, "started_at"),
            ended_at=_time(obj, "ended_at"),
            last_error=_member(obj, "last_error", str, optional=True),
            bytes=_member(obj, "bytes", int, optional=True),
            peak_rss_bytes=_member(obj, "peak_rss_bytes", int, optional=True),
        )


@dataclass(frozen=True)
class TimelineDaq:
    """One DAQ of ``GetTimeline``: its times and what each stage took."""

    id: str
    substate: str
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    stages: dict[str, StageRun]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "substate": self.substate,
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "stages": {name: run.to_json() for name, run in self.stages.items()},
        }

    @classmethod
    def from_json(cls, obj: Any) -> TimelineDaq:
        stages = _member(obj, "stages", dict)
        return cls(
            id=_member(obj, "id", str),
            substate=_member(obj, "substate", str),
            queued_at=_time(obj, "queued_at"),
            started_at=_time(obj, "started_at"),
            finished_at=_time(obj, "finished_at"),
            stages={str(name): StageRun.from_json(run) for name, run in stages.items()},
        )


@dataclass(frozen=True)
class Timeline:
    """``GetTimeline``: the DAQs of a window, oldest first; ``truncated`` when there were more."""

    daqs: tuple[TimelineDaq, ...]
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"daqs": [daq.to_json() for daq in self.daqs], "truncated": self.truncated}

    @classmethod
    def from_json(cls, obj: Any) -> Timeline:
        daqs = tuple(TimelineDaq.from_json(item) for item in _list(obj, "daqs"))
        return cls(daqs, _member(obj, "truncated", bool))


@dataclass(frozen=True)
class PlannedHdu:
    """One HDU of the product a dry run plans.

    Read from either form a server may send: ``{"index", "name", "source",
    "bytes"}``, or the merger's plan entries ``{"index", "origin", "kind",
    "extname", "header_size", "data_size"}`` (``bytes`` is then their sum).
    """

    index: int
    name: str
    source: str
    bytes: int
    kind: str | None = None

    def to_json(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "index": self.index,
            "name": self.name,
            "source": self.source,
            "bytes": self.bytes,
        }
        if self.kind is not None:
            wire["kind"] = self.kind
        return wire

    @classmethod
    def from_json(cls, obj: Any) -> PlannedHdu:
        index = _member(obj, "index", int)
        if "bytes" in obj:
            size = _member(obj, "bytes", int)
        else:
            size = _member(obj, "header_size", int) + _member(obj, "data_size", int)
        name = _member(obj, "name", str, optional=True)
        if name is None:
            name = _member(obj, "extname", str, optional=True) or ("PRIMARY" if index == 0 else "")
        source = _member(obj, "source", str, optional=True)
        if source is None:
            source = _member(obj, "origin", str)
        return cls(index, name, source, size, _member(obj, "kind", str, optional=True))


@dataclass(frozen=True)
class DaqCheck:
    """``CheckDaq``: a dry run's verdict, the planned header and HDUs, the predicted size."""

    ok: bool
    problems: tuple[str, ...]
    header: tuple[CardOrigin, ...]
    hdus: tuple[PlannedHdu, ...]
    predicted_bytes: int
    notes: tuple[str, ...] = ()
    """What is worth knowing but stops nothing (the id already queued with these bytes)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "header": [card.to_json() for card in self.header],
            "hdus": [hdu.to_json() for hdu in self.hdus],
            "predicted_bytes": self.predicted_bytes,
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, obj: Any) -> DaqCheck:
        problems = _strings(obj, "problems")
        # ``notes`` is newer than the rest: a server without it has none to give.
        notes = _strings(obj, "notes") if isinstance(obj, dict) and "notes" in obj else []
        return cls(
            ok=_member(obj, "ok", bool),
            problems=tuple(problems),
            header=tuple(CardOrigin.from_json(item) for item in _list(obj, "header")),
            hdus=tuple(PlannedHdu.from_json(item) for item in _list(obj, "hdus")),
            predicted_bytes=_member(obj, "predicted_bytes", int),
            notes=tuple(notes),
        )


def _strings(obj: Any, name: str) -> list[str]:
    items = _list(obj, name)
    if not all(isinstance(item, str) for item in items):
        raise TypeError(f"member {name!r} must hold strings")
    return items


@dataclass(frozen=True)
class AuditProblem:
    """One finding of ``AuditWorkspace``: what (``kind``), where, why, and whether it was fixed."""

    kind: str
    path: str
    detail: str
    repaired: bool

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "detail": self.detail,
                "repaired": self.repaired}  # fmt: skip

    @classmethod
    def from_json(cls, obj: Any) -> AuditProblem:
        return cls(
            kind=_member(obj, "kind", str),
            path=_member(obj, "path", str),
            detail=_member(obj, "detail", str),
            repaired=_member(obj, "repaired", bool),
        )


@dataclass(frozen=True)
class WorkspaceAudit:
    """``AuditWorkspace``'s answer: the problems found, and whether each was repaired."""

    problems: tuple[AuditProblem, ...]

    @property
    def unrepaired(self) -> tuple[AuditProblem, ...]:
        return tuple(problem for problem in self.problems if not problem.repaired)

    def to_json(self) -> dict[str, Any]:
        return {"problems": [problem.to_json() for problem in self.problems]}

    @classmethod
    def from_json(cls, obj: Any) -> WorkspaceAudit:
        return cls(tuple(AuditProblem.from_json(item) for item in _list(obj, "problems")))
