"""Refusals of unknown names that say what was meant: ``'keywordRule' is not allowed;
did you mean 'keywordRules'?``.

Shared by the configuration (unknown keys, at every level of its sections) and
the specification (names an object of the schema does not allow).  Callers build
these only once they refuse a document, never on the path of a valid one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

#: At most this many unknown names are spelt out; the rest are counted.  A
#: document can hold any number of them, and a refusal must stay short.
MAX_NAMED = 20
#: Longest part of a name quoted in a refusal.
_MAX_SHOWN = 64


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (ignoring case), if any is close enough."""
    import difflib  # deferred: the merger and the vetting child need it only to refuse

    by_folded = {candidate.casefold(): candidate for candidate in known}
    close = difflib.get_close_matches(name.casefold(), by_folded, n=1, cutoff=0.7)
    return by_folded[close[0]] if close else None


def not_allowed(unknown: Sequence[str], known: Sequence[str], prefix: str = "") -> list[str]:
    """One clause per unknown name that resembles a known one, one clause for the rest.

    ``known`` are the names allowed at the level the unknown ones were found at;
    ``prefix`` is put before every name shown (``"limits."`` for a section).  A
    name like none of them is answered with the list of the allowed ones.
    """
    named, more = unknown[:MAX_NAMED], len(unknown) - MAX_NAMED
    suggested: list[str] = []
    unlike: list[str] = []
    for name in named:
        match = nearest(name, known)
        if match is None:
            unlike.append(_quoted(prefix + name))
        else:
            suggested.append(
                f"{_quoted(prefix + name)} is not allowed; did you mean {_quoted(prefix + match)}?"
            )
    if not unlike and more <= 0:
        return suggested
    names = ", ".join(unlike)
    if more > 0:
        names = f"{names} and {more} more" if unlike else f"{more} more names"
    verb = "is" if len(unlike) == 1 and more <= 0 else "are"
    allowed = ", ".join(prefix + name for name in known)
    return [f"{names} {verb} not allowed (allowed: {allowed})", *suggested]


def sentences(clauses: Iterable[str]) -> str:
    """Clauses as one line of sentences: each ends with its question mark, or a full stop
    when another follows."""
    clauses = list(clauses)
    ended = [clause if clause.endswith("?") else clause + "." for clause in clauses[:-1]]
    return " ".join([*ended, *clauses[-1:]])


def _quoted(name: str) -> str:
    if len(name) > _MAX_SHOWN:
        return repr(name[:_MAX_SHOWN]) + "..."
    return repr(name)
