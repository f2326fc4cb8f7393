"""``/daq/CheckDaq``: a dry run of a whole DAQ, with nothing queued and nothing written.

The same checks as a real DAQ, done now: the specification is validated as
``QueueDaq`` would (schema, keyword rules, the server's own checks); every
file source is looked at where it is — a local one as collection checks it
(present, a regular file, readable, FITS), a remote one over ssh with the
tools collection uses; when every source is here, the merger is run with
``--dry-run`` and gives the planned primary header (with where each card
comes from) and the HDUs; the predicted product size is compared with the
space the workspace has above its reserve.  Problems are listed, each
naming what is wrong; ``ok`` is true when there is none.

The id is looked up in the store too, as ``QueueDaq`` would: a different
specification under a known id is a problem (``QueueDaq`` would refuse it),
naming the DAQ's substate; the very same bytes are not — ``QueueDaq`` would
answer with success and queue nothing new — and ``notes`` says so.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks

from dpmd.daq.admission.intake import specification_text
from dpmd.daq.admission.rules import server_problems
from dpmd.daq.persist.journal import Journal
from dpmd.daq.persist.store import StoredDaq, StoreError
from dpmd.daq.running.host import Means
from dpmd.locations import RemoteFile, split_location
from dpmd.record import DaqRecord
from dpmd.spec import FitsFileSource, Specification, SpecificationError, parse_specification
from dpmd.stages.collect import FITS_SIGNATURE, Unusable, inspect_file
from dpmd.stages.transfer import remote_script_argv
from dpmd.storage import StorageMonitor
from dpmd.workers import ProcessRunner, python_command

PROBE = "test -r {0} || exit 3; wc -c < {0}; head -c 9 {0}; echo"
"""A remote source: readable, its size, its first bytes (``SIMPLE  =`` for FITS)."""


class DryRun:
    """``CheckDaq``: every check ``QueueDaq`` and the stages would make, writing nothing.

    May call the vetting, the journal (for the id's stored state), the storage monitor
    and child processes (the merger's ``--dry-run``, the remote probes)."""

    def __init__(self, means: Means, runner: ProcessRunner, storage: StorageMonitor,
                 journal: Journal) -> None:  # fmt: skip
        self._means = means
        self._runner = runner
        self._storage = storage
        self._journal = journal

    @inlineCallbacks
    def check(self, document: str | dict[str, Any]) -> Any:
        answer: dict[str, Any] = {"ok": False, "problems": [], "header": [], "hdus": [],
                                  "predicted_bytes": 0, "notes": []}  # fmt: skip
        problems: list[str] = answer["problems"]
        try:
            text = specification_text(document)
            specification = yield self._means.run_blocking(parse_specification, text)
        except SpecificationError as error:
            problems.append(f"invalid specification: {error}")
            return answer
        problems += server_problems(specification, self._means.config)
        yield self._known_id(specification.id, text, answer)
        sizes = 0
        all_local = True
        for source in specification.file_sources():
            where = split_location(source.location)
            if isinstance(where, RemoteFile):
                all_local = False
                size = yield self._probe_remote(source, where, problems)
            else:
                size = yield self._probe_local(source, where, problems)
            sizes += size
        answer["predicted_bytes"] = sizes
        if all_local and not problems:
            yield self._plan(specification, text, answer)
        yield self._space(answer)
        answer["ok"] = not problems
        return answer

    @inlineCallbacks
    def _known_id(self, daq_id: str, text: bytes, answer: dict[str, Any]) -> Any:
        """What ``QueueDaq`` would make of this id: new, the same DAQ again, or a refusal."""
        try:
            stored: StoredDaq | None = yield self._journal.find(daq_id)
            if stored is None:
                return
            known: bytes = yield self._journal.specification(daq_id)
        except StoreError as error:
            answer["problems"].append(f"cannot look up DAQ id '{daq_id}' in the store: {error}")
            return
        substate = DaqRecord.decode(stored.record).substate.value
        where = f"{'archived' if stored.archived else 'queued'} ({substate})"
        if known == text:
            answer["notes"].append(
                f"DAQ id '{daq_id}' is already {where} with this very specification: QueueDaq "
                "would accept it again idempotently and queue nothing new"
            )
        else:
            answer["problems"].append(
                f"DAQ id '{daq_id}' is already {where} with a different specification: "
                "QueueDaq would refuse it"
            )

    @inlineCallbacks
    def _probe_local(self, source: FitsFileSource, location: str, problems: list[str]) -> Any:
        path = self._means.config.dataroot / location
        try:
            found = yield self._means.run_blocking(inspect_file, source, path)
        except Unusable as error:
            problems.append(str(error))
            return 0
        return int(found["bytes"])

    @inlineCallbacks
    def _probe_remote(self, source: FitsFileSource, remote: RemoteFile,
                      problems: list[str]) -> Any:  # fmt: skip
        argv = remote_script_argv(self._means.config.transfer, remote, PROBE, remote.path)
        lines: list[bytes] = []
        child = self._runner.spawn("check", argv, on_line=lines.append)
        status = yield child.wait()
        name = f"source '{source.source_name}'"
        if status.code == 3:
            problems.append(f"{name}: {source.location} does not exist or cannot be read")
            return 0
        reason = child.start_failure() or child.last_error_line() or status.describe()
        if not status.ok or len(lines) < 2:
            problems.append(f"{name}: cannot look at {source.location}: {reason}")
            return 0
        if lines[1].strip() != FITS_SIGNATURE.strip():
            problems.append(f"{name}: {source.location} is not a FITS file")
        return int(lines[0])

    @inlineCallbacks
    def _plan(self, specification: Specification, text: bytes, answer: dict[str, Any]) -> Any:
        """The merger's dry run, on a copy of the specification outside the workspace."""
        config = self._means.config
        folder = Path(tempfile.mkdtemp(prefix="dpmd-check-"))
        try:
            spec_file = folder / "specification.json"
            spec_file.write_bytes(text)
            product = config.workspace / specification.product_name  # never written
            argv = python_command(config.python, "dpmd.merge", "--dry-run", "--json",
                                  "--root", str(config.dataroot), "-o", str(product),
                                  str(spec_file))  # fmt: skip
            messages: list[dict[str, Any]] = []
            child = self._runner.spawn("check", argv, on_line=lambda line: messages.append(
                json.loads(line)))  # fmt: skip
            status = yield child.wait()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        by_type = {message.get("type"): message for message in messages}
        if "plan" in by_type:
            plan = by_type["plan"]
            answer["predicted_bytes"] = plan["size"]
            answer["hdus"] = plan["hdus"]
        if "provenance" in by_type:
            answer["header"] = by_type["provenance"]["cards"]
        if not status.ok:
            error = by_type.get("error", {}).get("message") or status.describe()
            answer["problems"].append(f"the merger's dry run failed: {error}")

    @inlineCallbacks
    def _space(self, answer: dict[str, Any]) -> Any:
        status = yield self._storage.query()
        room = status.available - self._storage.reserve_bytes(status)
        if answer["predicted_bytes"] > room:
            answer["problems"].append(
                f"the product needs about {answer['predicted_bytes']} bytes; the workspace has "
                f"{max(room, 0)} above its reserve ({status.available} free)"
            )
