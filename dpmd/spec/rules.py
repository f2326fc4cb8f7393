"""Keyword rules of a specification: selection patterns, filters and transforms.

Parsing lives here, not in the merger, so that a malformed rule is refused when
the specification is queued rather than halfway through a merge. The objects
also carry their meaning (`matches`, `select`, `rename`) so the grammar and its
semantics are defined in one place; the merger only runs the pipeline.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .names import KeywordKind


class RuleError(ValueError):
    """A selection pattern, regular expression or format string is malformed."""


_KIND_LETTERS = {kind.value: kind for kind in KeywordKind}


@functools.cache
def _re2() -> tuple[Any, Any]:
    """RE2 and its options, imported when a transform is first compiled: a merge
    without transforms (most of them) does not load the library (2.6 MiB)."""
    import re2  # type: ignore[import-untyped]

    options = re2.Options()
    options.log_errors = False  # errors are reported to the user, not to stderr
    return re2, options


class Match(Protocol):
    """What a transform's format needs of a match (RE2's and `re`'s alike)."""

    def group(self, number: int, /) -> str | None: ...
    def start(self) -> int: ...
    def end(self) -> int: ...


class Regex(Protocol):
    """A compiled transform regular expression."""

    pattern: str
    groups: int

    def finditer(self, text: str, /) -> Iterator[Match]: ...


@dataclass(frozen=True)
class SelectionPattern:
    """One `"+e INS *"`-style pattern: add or remove keywords of some kinds by name."""

    text: str
    include: bool
    kinds: frozenset[KeywordKind]
    glob: str
    regex: re.Pattern[str]

    def matches(self, kind: KeywordKind, name: str) -> bool:
        return kind in self.kinds and self.regex.match(name) is not None


def parse_pattern(text: str) -> SelectionPattern:
    """Parse `operator kinds SP glob`; the glob is compared in upper case."""
    if not text or text[0] not in "+-":
        raise RuleError(f"pattern {text!r} must start with '+' (add) or '-' (remove)")
    pos, kinds = 1, set()
    while pos < len(text) and text[pos] != " ":
        letter = text[pos]
        if letter not in _KIND_LETTERS and not letter.islower():
            raise RuleError(
                f"pattern {text!r} needs one space between kind letters and name pattern"
            )
        if letter not in _KIND_LETTERS:
            raise RuleError(
                f"unknown kind letter {letter!r} in pattern {text!r} "
                "(v = value, e = ESO hierarchical, c = commentary, then one space)"
            )
        if _KIND_LETTERS[letter] in kinds:
            raise RuleError(f"kind letter {letter!r} repeated in pattern {text!r}")
        kinds.add(_KIND_LETTERS[letter])
        pos += 1
    if not kinds:
        raise RuleError(f"pattern {text!r} names no keyword kind (v, e or c)")
    glob = text[pos + 1 :]
    if pos >= len(text) or not glob:
        raise RuleError(f"pattern {text!r} has no name pattern after the kind letters")
    if glob != glob.strip():
        raise RuleError(f"name pattern {glob!r} must not start or end with a space")
    glob = glob.upper()
    return SelectionPattern(
        text=text,
        include=text[0] == "+",
        kinds=frozenset(kinds),
        glob=glob,
        regex=re.compile(fnmatch.translate(glob)),
    )


def select(
    patterns: Sequence[SelectionPattern], keys: Sequence[tuple[KeywordKind, str]]
) -> list[bool]:
    """Apply patterns in order to an initially empty selection; one flag per key."""
    chosen = [False] * len(keys)
    for pattern in patterns:
        for index, (kind, name) in enumerate(keys):
            if chosen[index] != pattern.include and pattern.matches(kind, name):
                chosen[index] = pattern.include
    return chosen


@dataclass(frozen=True)
class FilterRule:
    """Keep only the keywords the patterns select, in their original order."""

    patterns: tuple[SelectionPattern, ...]


#: A parsed format: literal text, group numbers, or "`" / "'" (text before/after the match).
FormatToken = str | int | tuple[str]


@dataclass(frozen=True)
class TransformRule:
    """Rename the selected keywords: `regex` replaced (all matches) by `format`."""

    patterns: tuple[SelectionPattern, ...]
    regex: Regex
    format: str
    tokens: tuple[FormatToken, ...]

    def rename(self, name: str) -> str:
        """Replace every match, as ECMAScript's replace-all and Python's `re.sub` do.

        Matches are found left to right; an empty match right after a match is
        kept ('x*' on 'abxd' gives '-a-b--d-'); after an empty match the search
        goes on one character later. (The RE2 module's `finditer` can report an
        empty match twice when it jumped to it; the repeat is skipped.)
        """
        out, copied, previous = [], 0, None
        for match in self.regex.finditer(name):
            span = (match.start(), match.end())
            if span == previous:
                continue
            previous = span
            out += [name[copied : span[0]], self._format(match, name)]
            copied = span[1]
        out.append(name[copied:])
        return "".join(out)

    def _format(self, match: Match, name: str) -> str:
        out = []
        for token in self.tokens:
            if isinstance(token, int):
                out.append(match.group(token) or "")
            elif isinstance(token, tuple):
                out.append(name[: match.start()] if token[0] == "`" else name[match.end() :])
            else:
                out.append(token)
        return "".join(out)


KeywordRule = FilterRule | TransformRule


def parse_format(text: str, groups: int) -> tuple[FormatToken, ...]:
    """Parse ECMAScript-style replacement text: $1..$99, $&, $0, $`, $', $$."""
    tokens: list[FormatToken] = []
    literal: list[str] = []
    pos = 0

    def flush() -> None:
        if literal:
            tokens.append("".join(literal))
            literal.clear()

    while pos < len(text):
        char = text[pos]
        nxt = text[pos + 1 : pos + 2]
        if char != "$" or not nxt:
            literal.append(char)
            pos += 1
        elif nxt == "$":
            literal.append("$")
            pos += 2
        elif nxt == "&":
            flush()
            tokens.append(0)
            pos += 2
        elif nxt in "`'":
            flush()
            tokens.append((nxt,))
            pos += 2
        elif nxt.isdigit():
            two = text[pos + 1 : pos + 3]
            if len(two) == 2 and two.isdigit() and 0 < int(two) <= groups:
                number, pos = int(two), pos + 3
            else:
                number, pos = int(nxt), pos + 2
            if number > groups:
                raise RuleError(
                    f"format {text!r} refers to group ${number} but the regex has {groups} group(s)"
                )
            flush()
            tokens.append(number)
        else:
            literal.append(char)
            pos += 1
    flush()
    return tuple(tokens)


def compile_regex(regex: str) -> Regex:
    """Compile a transform's regular expression with RE2, which matches in linear time.

    A backtracking engine can take exponential time on a keyword name (the
    rule `(A+)+B` on forty `A`s kept a merge busy for minutes), so whatever RE2
    cannot compile — backreferences, look-around — is refused when the
    specification is validated. Python `re` reports syntax errors first, so the
    message tells a typo apart from an unsupported construct.
    """
    try:
        re.compile(regex)
    except re.error as exc:
        raise RuleError(f"invalid regular expression {regex!r}: {exc}") from None
    except RecursionError:
        raise RuleError(f"regular expression {regex!r} is nested too deeply") from None
    re2, options = _re2()
    try:
        return re2.compile(regex, options)  # type: ignore[no-any-return]
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args else "unsupported"
        raise RuleError(
            f"regular expression {regex!r} cannot be matched in linear time ({reason}); "
            "rules use RE2 syntax: no backreferences, no look-around"
        ) from None
