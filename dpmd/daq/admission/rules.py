"""The server's own checks of a specification, beyond the merger's schema.

The DAQ id and file id name folders and files in the workspace and at the
receivers, so they are held to a portable file-name alphabet.  Locations and
receivers become arguments of rsync and ssh, so anything that could be read
as an option, or that holds control characters, is refused here, before
anything touches the disk or the network.  A receiver on this host must be
under one of the directories the operator allowed (``release.allowed``, and
``release_dir``), and never inside the workspace: a specification must not
be able to make dpmd link or copy its product into ``/etc``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from dpmd.locations import confinement_problem, is_local_host, location_problem, receiver_problem
from dpmd.spec import Specification

NAME_PATTERN = re.compile(r"[A-Za-z0-9._:+-]{1,128}")


def name_problem(what: str, value: str) -> str | None:
    if not NAME_PATTERN.fullmatch(value):
        return f"{what} {value!r} must be 1 to 128 characters of letters, digits and . _ : + -"
    if value in (".", ".."):
        return f"{what} must not be {value!r}"
    return None


class ReceiverRules(Protocol):
    """Where local receivers may be: a ``Config``, or what the vetting child is told of it."""

    @property
    def release_allowed(self) -> tuple[Path, ...]: ...

    @property
    def workspace(self) -> Path: ...


def server_problems(specification: Specification, config: ReceiverRules) -> list[str]:
    """What makes a valid specification unusable by this server, each naming its source.

    Local receivers are held to ``config.release_allowed`` and kept out of
    ``config.workspace``.
    """
    problems = [
        problem
        for problem in (
            name_problem("$.id:", specification.id),
            name_problem("$.target.fileId:", specification.file_id),
        )
        if problem
    ]
    for source in specification.file_sources():
        problem = location_problem(source.location)
        if problem:
            problems.append(f"source '{source.source_name}': location {problem}")
    for index, receiver in enumerate(specification.receivers):
        problem = receiver_problem(receiver.host, receiver.path)
        if problem is None and is_local_host(receiver.host):
            problem = confinement_problem(receiver.path, config.release_allowed, config.workspace)
        if problem:
            problems.append(f"$.receivers[{index}]: {problem}")
    return problems
