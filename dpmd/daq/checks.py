"""The server's own checks of a specification, beyond the merger's schema.

The DAQ id and file id name folders and files in the workspace and at the
receivers, so they are held to a portable file-name alphabet here, before
anything touches the disk.
"""

from __future__ import annotations

import re

from dpmd.spec import Specification

NAME_PATTERN = re.compile(r"[A-Za-z0-9._:+-]{1,128}")


def name_problem(what: str, value: str) -> str | None:
    if not NAME_PATTERN.fullmatch(value):
        return (
            f"{what} {value!r} must be 1 to 128 characters of letters, digits and . _ : + -"
        )
    if value in (".", ".."):
        return f"{what} must not be {value!r}"
    return None


def server_problems(specification: Specification) -> list[str]:
    """What makes a valid specification unusable by this server, each naming its path."""
    problems = [
        problem
        for problem in (
            name_problem("$.id:", specification.id),
            name_problem("$.target.fileId:", specification.file_id),
        )
        if problem
    ]
    return problems
