"""Delivering to a receiver on another host: rsync to the staging name, then a remote ``mv``.

The product goes over rsync (``dpmd.stages.transfer``: over ssh, resumable,
retried) to its hidden staging name, its manifest likewise beside it, and a
short remote script renames it into place unless a file is already there.
What is at the receiver is learnt by remote scripts too (does the staging
name exist, the size and ``b2sum`` of what is under the final name), so a
crash at any moment is resolved as at a local receiver.

``deliver_remote`` records each step through the ``ReleaseRun``; it calls
the run, the host and the transfer tools.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from dpmd.digest import Digest
from dpmd.locations import RemoteFile
from dpmd.record import Delivery
from dpmd.stages import StageHost
from dpmd.stages.manifest import manifest_name
from dpmd.stages.release_run import Destination, ReleaseProblem, ReleaseRun
from dpmd.stages.transfer import (
    Meter,
    TransferFailed,
    part_name,
    remote_script_argv,
    rsync_argv,
    run_remote,
    run_with_retries,
)


@inlineCallbacks
def deliver_remote(run: ReleaseRun, destination: Destination) -> Any:
    """Take one remote receiver's delivery from where its record says it is to ``delivered``."""
    host, key = run.host, destination.key
    final = str(destination.directory / run.name)
    staging = str(destination.directory / part_name(run.name))
    remote = RemoteFile(host=destination.host, path=staging)
    where = f"{destination.host}:{final}"
    try:
        if run.entry(key)["state"] == Delivery.STAGED:
            if not (yield remote_exists(host, remote, staging)):
                yield run.record_state(key, Delivery.DELIVERED,
                                       f"released to {where} (found done)")  # fmt: skip
                return
        else:
            found = yield remote_digest(host, remote, final)
            if found is not None:
                if found != run.digest:
                    raise run.conflict(destination, where, found)
                yield run.record_state(key, Delivery.DELIVERED,
                                       f"released to {where} (it was already there)",
                                       how="existing")  # fmt: skip
                return
            yield rsync_product(run, remote)
            yield run.record_state(key, Delivery.STAGED, f"receiver {key}: staged (rsync)",
                                   how="rsync")  # fmt: skip
        yield send_remote_manifest(run, destination)
        if not (yield remote_publish(host, remote, staging, final)):
            found = yield remote_digest(host, remote, final)
            if found != run.digest:
                raise run.conflict(destination, where, found or Digest(0, "?"))
    except TransferFailed as error:
        raise ReleaseProblem(f"receiver {key}: cannot release to {where}: {error}",
                             terminal=error.terminal) from None  # fmt: skip
    yield run.record_state(key, Delivery.DELIVERED, f"released to {where} (rsync)")


@inlineCallbacks
def rsync_product(run: ReleaseRun, remote: RemoteFile) -> Any:
    host = run.host
    meter = Meter()

    def show_progress() -> None:
        host.set_progress("releasing", meter.done, meter.total, "bytes")

    argv = rsync_argv(host.config.transfer, str(run.product), remote.rsync_argument)
    yield run_with_retries(host, "rsync", argv, meter, show_progress)


@inlineCallbacks
def send_remote_manifest(run: ReleaseRun, destination: Destination) -> Any:
    """rsync the manifest to a hidden name at the receiver, then ``mv`` it into place."""
    if not destination.manifest:
        return
    host = run.host
    content = yield run.manifest_bytes()
    name = manifest_name(run.name)
    local = host.directory / name
    yield host.run_blocking(local.write_bytes, content)
    part = str(destination.directory / part_name(name))
    remote = RemoteFile(host=destination.host, path=part)
    argv = rsync_argv(host.config.transfer, str(local), remote.rsync_argument)
    yield run_with_retries(host, "rsync", argv, Meter(), lambda: None)
    yield run_script(host, remote, "mv -f -- {0} {1}", part, str(destination.directory / name))


def remote_exists(host: StageHost, remote: RemoteFile, path: str) -> Any:
    script = "if [ -e {0} ] || [ -L {0} ]; then echo yes; else echo no; fi"
    return run_script(host, remote, script, path).addCallback(lambda lines: lines == ["yes"])


def remote_digest(host: StageHost, remote: RemoteFile, path: str) -> Any:
    """``Digest`` of a remote file (``b2sum``, as BLAKE2b-512), or None if it is absent."""
    script = (
        "if [ -e {0} ] || [ -L {0} ]; then wc -c < {0} && b2sum < {0}; else echo absent; fi"
    )

    def parsed(lines: list[str]) -> Digest | None:
        if lines == ["absent"]:
            return None
        return Digest(int(lines[0]), lines[1].split()[0])

    return run_script(host, remote, script, path).addCallback(parsed)


def remote_publish(host: StageHost, remote: RemoteFile, staging: str, final: str) -> Any:
    """``mv`` that refuses to replace a file (answering ``taken``)."""
    script = (
        "if [ -e {1} ] || [ -L {1} ]; then echo taken; else mv -f -- {0} {1} && echo moved; fi"
    )
    return run_script(host, remote, script, staging, final).addCallback(
        lambda lines: lines == ["moved"]
    )


def run_script(host: StageHost, remote: RemoteFile, script: str, *paths: str) -> Any:
    """Run one of the scripts above at the receiver's host; fires with its output lines."""
    argv = remote_script_argv(host.config.transfer, remote, script, *paths)
    return run_remote(host, argv)
