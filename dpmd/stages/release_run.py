"""One run of the release stage: its receivers and what every delivery shares.

``destinations`` turns the specification's receivers (or, without any, the
server's ``release_dir``) into ``Destination``s, keyed as the record's
``deliveries`` are.  A ``ReleaseRun`` holds what a delivery to any of them
needs: the product, its digest, the manifest (built once per run), and the
record of each delivery's steps, which it commits through the stage's host.

Local and remote deliveries (``release_local``, ``release_remote``) use it;
it calls only the ``StageHost`` and the modules below the stages.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks

from dpmd.digest import ALGORITHM, Digest
from dpmd.locations import is_local_host
from dpmd.spec import OlasReceiver
from dpmd.stages import StageHost
from dpmd.stages.manifest import build_manifest
from dpmd.workers import python_command
from dpmd.workspace import SPECIFICATION

RELEASE_DIR_KEY = "release_dir"


@dataclass(frozen=True)
class Destination:
    """Where one receiver wants the product: a folder, on this host when ``host`` is empty."""

    key: str
    directory: Path
    host: str = ""
    allow_symlink: bool = True
    manifest: bool = True

    @property
    def is_default(self) -> bool:
        return self.key == RELEASE_DIR_KEY


def destinations(receivers: tuple[OlasReceiver, ...], release_dir: Path) -> list[Destination]:
    if not receivers:
        return [Destination(RELEASE_DIR_KEY, release_dir, "", False, True)]
    return [
        Destination(
            str(index),
            Path(receiver.path),
            "" if is_local_host(receiver.host) else receiver.host,
            receiver.allow_symlink,
            receiver.manifest,
        )
        for index, receiver in enumerate(receivers)
    ]


def release_path(destination: Destination, name: str) -> str:
    final = str(destination.directory / name)
    return f"{destination.host}:{final}" if destination.host else final


class ReleaseProblem(Exception):
    """One receiver cannot be served now; the text is its alert's description."""

    def __init__(self, description: str, terminal: bool = True) -> None:
        super().__init__(description)
        self.terminal = terminal


class ReleaseRun:
    """The product, its digest and manifest, and each delivery's record, for one run."""

    def __init__(self, host: StageHost) -> None:
        self.host = host
        self.name = host.specification.archive_name
        self.product = Path(host.record.product)
        self.digest: Digest | None = None
        self.manifest: bytes | None = None
        """The manifest written beside the product, built once per run."""

    def entry(self, key: str) -> dict[str, Any]:
        return self.host.record.deliveries[key]

    def record_state(self, key: str, state: str, message: str, **values: Any) -> Any:
        deliveries = dict(self.host.record.deliveries)
        deliveries[key] = {**deliveries[key], **values, "state": state}
        return self.host.note(message, deliveries=deliveries)

    @inlineCallbacks
    def file_digest(self, path: str) -> Any:
        """Size and checksum of a local file, computed by a child process."""
        lines: list[bytes] = []
        argv = python_command(self.host.config.python, "dpmd.digest", path)
        child = self.host.spawn("digest", argv, on_line=lines.append)
        status = yield child.wait()
        answer = json.loads(lines[-1]) if lines else {}
        if not status.ok or ALGORITHM not in answer:
            reason = answer.get("error") or child.last_error_line() or child.describe_end()
            raise OSError(errno.EIO, f"cannot read it to check it: {reason}", path)
        return Digest.from_json(answer)

    def conflict(self, destination: Destination, where: str, found: Digest) -> ReleaseProblem:
        assert self.digest is not None
        return ReleaseProblem(
            f"receiver {destination.key}: a different file is already at {where} "
            f"({found.describe()}; the product is {self.digest.describe()}); it is never "
            "overwritten: move it away, then RetryMergeDaq"
        )

    @inlineCallbacks
    def manifest_bytes(self) -> Any:
        if self.manifest is None:
            self.manifest = yield self.host.run_blocking(
                build_manifest, self.host.record, self.product, self.name,
                self.host.directory / SPECIFICATION, self.host.clock.seconds(),
            )  # fmt: skip
        return self.manifest
