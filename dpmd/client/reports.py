"""What ``dpmctl check``, ``fsck`` and ``checksum`` show people.

Pure functions of their arguments returning ``rich`` renderables, like
``dpmd.client.render``; a verdict that is bad (a problem, a checksum that
does not verify) is styled as an Error alert is.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.text import Text

from dpmd.client.models import DaqCheck, WorkspaceAudit
from dpmd.client.provenance import provenance_table
from dpmd.client.render import SEVERITY_STYLES, column_table, key_value_table
from dpmd.client.units import human_size
from dpmd.model import AlertSeverity

BAD = SEVERITY_STYLES[AlertSeverity.Error]


def _indented(renderable: RenderableType) -> Padding:
    return Padding(renderable, (0, 0, 0, 2))


def _size(size: int) -> str:
    return f"{size} bytes ({human_size(size)})" if size >= 1024 else f"{size} bytes"


def check_view(check: DaqCheck) -> RenderableType:
    """The problems first (what the operator must fix), then the plan."""
    if check.ok:
        parts: list[RenderableType] = [Text("ok: nothing found that would stop this DAQ")]
    else:
        count = len(check.problems)
        parts = [Text(f"{count} problem{'' if count == 1 else 's'}:", style=BAD)]
        parts += [_indented(Text(f"- {problem}", overflow="fold")) for problem in check.problems]
    parts += [_indented(Text(f"note: {note}", overflow="fold")) for note in check.notes]
    parts.append(key_value_table([("predicted size", _size(check.predicted_bytes))]))
    if check.header:
        parts += ["planned primary header:", _indented(provenance_table(check.header))]
    else:
        parts.append(Text("planned primary header: none (the server plans it when every "
                          "source is local and nothing else is wrong)"))  # fmt: skip
    if check.hdus:
        rows = [(str(hdu.index), hdu.name or "-", hdu.source, human_size(hdu.bytes))
                for hdu in check.hdus]  # fmt: skip
        parts += ["planned HDUs:", _indented(column_table(("HDU", "NAME", "SOURCE", "SIZE"), rows))]
    return Group(*parts)


def audit_view(audit: WorkspaceAudit, repair: bool) -> RenderableType:
    """A row per problem, then how many were repaired and what to do about the rest."""
    if not audit.problems:
        return Text("no problems found")
    rows = [
        (problem.kind, problem.path, problem.detail,
         Text("yes") if problem.repaired else Text("no", style=BAD))
        for problem in audit.problems
    ]  # fmt: skip
    left = len(audit.unrepaired)
    count = len(audit.problems)
    summary = f"{count} problem{'' if count == 1 else 's'}: {count - left} repaired, {left} left"
    if left and not repair:
        summary += " (dpmctl fsck --repair fixes what is safe to fix)"
    elif left:
        summary += " (not safe to repair automatically: see each detail)"
    table = column_table(("KIND", "PATH", "DETAIL", "REPAIRED"), rows)
    return Group(table, Text(summary))


def _verdict(ok: bool | None) -> Text:
    if ok is None:
        return Text("-")
    return Text("yes") if ok else Text("NO", style=BAD)


def checksum_view(path: str, facts: dict[str, Any]) -> RenderableType:
    """A file's size, BLAKE2b-512 and each HDU's CHECKSUM and DATASUM with their verdicts."""
    rows = [
        (str(hdu["index"]), hdu["checksum"] or "-", _verdict(hdu["checksum_ok"]),
         hdu["datasum"] or "-", _verdict(hdu["datasum_ok"]))
        for hdu in facts["hdus"]
    ]  # fmt: skip
    summary = key_value_table([("size", _size(facts["size"])), ("blake2b", facts["blake2b"])])
    table = column_table(("HDU", "CHECKSUM", "VERIFIES", "DATASUM", "VERIFIES"), rows)
    return Group(Text(path, overflow="fold"), _indented(summary), _indented(table))


def verifies(facts: dict[str, Any]) -> bool:
    """No CHECKSUM or DATASUM of the file fails (absent ones do not count)."""
    return all(
        hdu[verdict] is not False
        for hdu in facts["hdus"]
        for verdict in ("checksum_ok", "datasum_ok")
    )
