"""``/daq/CheckDaq``: a dry run of a whole DAQ, with nothing queued and nothing written.

The same checks as a real DAQ, done now: the specification is validated as
``QueueDaq`` would (schema, keyword rules, the server's own checks); every
file source is looked at where it is — a local one as collection checks it
(present, a regular file, readable, FITS), a remote one by reading its
headers over ssh with the tools collection uses (``dpmd.stages.remote_headers``:
the headers only, never the data units); then the merger is run with
``--dry-run``, a remote source standing as a skeleton of its file (its
headers at their offsets, holes for the data), and gives the planned primary
header (with where each card comes from) and the HDUs; the predicted product
size is compared with the space the workspace has above its reserve.
Problems are listed, each naming what is wrong; ``ok`` is true when there is
none.

The remote sources are read side by side, ``limits.transfer`` at once, and
all of them within ``transfer.timeout`` seconds: a host that does not answer
costs the dry run that long, not a transfer's retries.

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
from typing import Any, NamedTuple

from twisted.internet.defer import DeferredSemaphore, gatherResults, inlineCallbacks, succeed

from dpmd.daq.admission.intake import specification_text
from dpmd.daq.admission.rules import server_problems
from dpmd.daq.persist.journal import Journal
from dpmd.daq.persist.store import StoredDaq, StoreError
from dpmd.daq.running.host import Means
from dpmd.locations import RemoteFile, location_problem, split_location
from dpmd.record import DaqRecord
from dpmd.spec import FitsFileSource, Specification, SpecificationError, parse_specification
from dpmd.stages.collect import Unusable, inspect_file
from dpmd.stages.remote_headers import RemoteHeaders, RemoteHeadersError, read_remote_headers
from dpmd.storage import StorageMonitor
from dpmd.workers import ProcessRunner, python_command


class Look(NamedTuple):
    """What looking at one file source found: its size, or the problem; and, for a
    remote one, the skeleton that stands for it in the merger's dry run."""

    size: int = 0
    problem: str | None = None
    skeleton: Path | None = None


class DryRun:
    """``CheckDaq``: every check ``QueueDaq`` and the stages would make, writing nothing.

    May call the vetting, the journal (for the id's stored state), the storage monitor
    and child processes (the merger's ``--dry-run``, ssh reading remote headers)."""

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
        folder: Path = yield self._means.run_blocking(_make_folder)
        try:
            looks = yield self._look_at_sources(specification, folder)
            problems += [look.problem for look in looks if look.problem is not None]
            answer["predicted_bytes"] = sum(look.size for look in looks)
            if not problems:
                skeletons = {source.source_name: look.skeleton for source, look
                             in zip(specification.file_sources(), looks, strict=True)
                             if look.skeleton is not None}  # fmt: skip
                yield self._plan(specification, text, folder, skeletons, answer)
        finally:
            yield self._means.run_blocking(_remove_folder, folder)
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

    def _look_at_sources(self, specification: Specification, folder: Path) -> Any:
        """Every file source looked at where it is; fires with a ``Look`` for each, in order."""
        config = self._means.config
        deadline = self._means.clock.seconds() + config.transfer.timeout
        slots = DeferredSemaphore(config.limits.transfer)
        looks = []
        for index, source in enumerate(specification.file_sources()):
            where = split_location(source.location)
            if not isinstance(where, RemoteFile):
                looks.append(self._look_local(source, where))
            elif location_problem(source.location) is None:  # else a problem already
                skeleton = folder / f"source-{index}.fits"
                looks.append(slots.run(self._look_remote, source, where, skeleton, deadline))
            else:
                looks.append(succeed(Look()))
        return gatherResults(looks, consumeErrors=True)

    @inlineCallbacks
    def _look_local(self, source: FitsFileSource, location: str) -> Any:
        path = self._means.config.dataroot / location
        try:
            found = yield self._means.run_blocking(inspect_file, source, path)
        except Unusable as error:
            return Look(problem=str(error))
        return Look(int(found["bytes"]))

    @inlineCallbacks
    def _look_remote(self, source: FitsFileSource, remote: RemoteFile, skeleton: Path,
                     deadline: float) -> Any:  # fmt: skip
        """The remote file's headers, written as its skeleton; in the time left."""
        name = f"source '{source.source_name}'"
        transfer = self._means.config.transfer
        left = deadline - self._means.clock.seconds()
        if left <= 0:
            return Look(problem=f"{name}: {source.location} was not read: the dry run's "
                                f"{transfer.timeout:g} s for remote sources ran out")  # fmt: skip
        try:
            headers: RemoteHeaders = yield read_remote_headers(
                self._runner, self._means.clock, transfer, remote, left
            )
        except RemoteHeadersError as error:
            bound = (f" (the dry run gives remote sources {transfer.timeout:g} s: "
                     "transfer.timeout)") if error.timed_out else ""  # fmt: skip
            return Look(problem=f"{name}: {error}{bound}")
        yield self._means.run_blocking(headers.write_skeleton, skeleton)
        return Look(headers.size, skeleton=skeleton)

    @inlineCallbacks
    def _plan(self, specification: Specification, text: bytes, folder: Path,
              skeletons: dict[str, Path], answer: dict[str, Any]) -> Any:  # fmt: skip
        """The merger's dry run, on a copy of the specification outside the workspace,
        each remote source's skeleton standing for its file (``--resolve``)."""
        config = self._means.config
        spec_file = folder / "specification.json"
        resolve = folder / "skeletons.json"
        yield self._means.run_blocking(_write_inputs, spec_file, text, resolve, skeletons)
        product = config.workspace / specification.product_name  # never written
        argv = python_command(config.python, "dpmd.merge", "--dry-run", "--json",
                              "--root", str(config.dataroot), "-o", str(product),
                              "--resolve", str(resolve), str(spec_file))  # fmt: skip
        messages: list[dict[str, Any]] = []
        child = self._runner.spawn("check", argv, on_line=lambda line: messages.append(
            json.loads(line)))  # fmt: skip
        status = yield child.wait()
        by_type = {message.get("type"): message for message in messages}
        if "plan" in by_type:
            plan = by_type["plan"]
            answer["predicted_bytes"] = plan["size"]
            answer["hdus"] = plan["hdus"]
        if "provenance" in by_type:
            answer["header"] = by_type["provenance"]["cards"]
        if not status.ok:
            error = by_type.get("error", {}).get("message") or status.describe()
            for source in specification.file_sources():  # a skeleton is named as its file
                if source.source_name in skeletons:
                    error = error.replace(str(skeletons[source.source_name]), source.location)
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


def _write_inputs(spec_file: Path, text: bytes, resolve: Path, skeletons: dict[str, Path]) -> None:
    """The merger's inputs: the specification, and where each skeleton is (blocking)."""
    spec_file.write_bytes(text)
    resolve.write_text(json.dumps({name: str(path) for name, path in skeletons.items()}))


def _make_folder() -> Path:
    """Where the dry run keeps its inputs, outside the workspace (blocking)."""
    return Path(tempfile.mkdtemp(prefix="dpmd-check-"))


def _remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
