"""The headers of a remote FITS file, read over ssh without its data units.

``CheckDaq`` plans the product of a DAQ whose sources are on other hosts
without collecting them: it reads every header of each remote file, and only
its headers, then gives the merger's dry run a *skeleton* of the file, each
header at its own offset and holes (a sparse file) where the data units are.
The merger walks the skeleton exactly as it would walk the file.

Walking a FITS file means reading a header to its ``END`` card, computing the
size of the data unit from ``BITPIX``, ``NAXISn``, ``PCOUNT``, ``GCOUNT`` and
``GROUPS``, and skipping it to the next header.  Where that computation is
done decides the design:

* On the remote side, as one script: the remote host would need a FITS
  parser in ``sh`` (value fields, 64-bit products of axes, random groups),
  where the width of ``$(( ))`` and the behaviour of ``read`` vary between
  shells: a second implementation of the merger's rules, in the worst
  language for it.
* Here, with one ssh command per header: every HDU would cost a connection
  and an authentication (and a share of sshd's ``MaxStartups``).
* Here, over **one ssh connection** (what this module does): the remote
  side runs a small loop in plain ``sh`` (``SCRIPT``: ``dd``, ``fold``,
  ``base64``, ``tr``, ``stat``, all coreutils; no Python, nothing installed)
  that answers requests read from its stdin, ``BLOCK COUNT FIRST``: it sends
  the 2880-byte blocks from ``BLOCK`` on, each on a line of its own in
  base64, and stops after the block holding the ``END`` card, after
  ``COUNT`` blocks, or — for ``FIRST`` — after the first block when it does
  not begin a header (``SIMPLE`` or ``XTENSION``).  This side parses every
  block with the merger's own code (``dpmd.merge.fitsio``), computes the
  size of the data unit and asks for the next header at its offset: one
  round trip per HDU, and ``dd skip=`` seeks over the data, which is never
  read.  The remote ``END`` test only saves round trips: this side finds
  ``END`` itself and asks for more when the remote one stopped short.  The
  size comes from ``stat`` (GNU's, or BSD's ``-f %z``), not ``wc -c``, which
  reads the last block of a file whose size is a multiple of the page size.

The remote command is ``exec sh -c SCRIPT dpmd-headers PATH`` (the script
and the path quoted for the remote user's shell, whatever it is), run with
the collection's own ssh command and options (``transfer.ssh``,
``transfer.ssh_options``: ``remote_script_argv``).  What is read is bounded:
the headers (``limit`` bytes at most, all headers together), plus the first
block after the last HDU when there is something there (the merger accepts
zeros only).  What it takes is bounded too: the child is stopped after
``timeout`` seconds, whatever it is doing.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime

from dpmd.config import TransferConfig
from dpmd.locations import RemoteFile
from dpmd.merge.fitsio import FitsFormatError, data_size, keyword_value
from dpmd.spec.cards import BLOCK, RECORD
from dpmd.stages.transfer import remote_script_argv
from dpmd.workers import ChildProcess, ExitStatus, ProcessRunner

SCRIPT = " ".join(
    line.strip()
    for line in """
    f=$1;
    for p in dd base64 fold tr stat; do command -v "$p" >/dev/null || exit 6; done;
    test -e "$f" || exit 3;
    test -f "$f" || exit 4;
    test -r "$f" || exit 5;
    echo "S $(stat -L -c %s "$f" 2>/dev/null || stat -L -f %z "$f")"; echo E;
    while read -r b n k; do
      while [ "$n" -gt 0 ]; do
        printf "B "; dd if="$f" bs=2880 skip="$b" count=1 2>/dev/null | base64 | tr -d "\\n";
        echo;
        if dd if="$f" bs=2880 skip="$b" count=1 2>/dev/null | fold -b -w 80 | (
          while IFS= read -r c || [ -n "$c" ]; do
            case $k$c in 1XTENSION=*|1"SIMPLE  ="*) ;; 1*|0"END     "*) exit 0 ;; esac;
            k=0;
          done; exit 1 );
        then n=0; else n=$((n - 1)); fi;
        k=0; b=$((b + 1));
      done;
      echo E;
    done
""".strip().splitlines()
)
"""The remote loop, on one line (a C shell would not take newlines in quotes).

It answers ``S SIZE`` first, then every request with ``B BASE64`` lines and
``E``; it exits 3, 4, 5 or 6 when the file does not exist, is not a regular
file, cannot be read, or a program it needs is missing."""

COMMAND = "exec sh -c {0} dpmd-headers {1}"

MAX_HEADER_BYTES = 16 << 20
"""Bytes of headers read from one file at most (5825 blocks: a header of 200,000 cards)."""

KILL_GRACE = 2.0
"""Seconds ssh has to end after SIGTERM when the time is up, before SIGKILL."""

_EXITS = {
    3: "{where} does not exist",
    4: "{where} is not a regular file",
    5: "{where} cannot be read (permission denied)",
    6: "{host} lacks one of dd, base64, fold, tr, stat (coreutils), needed to read headers",
}


class RemoteHeadersError(Exception):
    """The headers could not be read; the text says why, naming the remote file.

    ``timed_out``: the time given was up before they were all read."""

    def __init__(self, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


@dataclass(frozen=True)
class RemoteHeaders:
    """What was read of a remote file: its size and the header blocks by offset."""

    size: int
    blocks: dict[int, bytes]
    received: int
    """Bytes that came over ssh (base64 and the dialogue's own words included)."""

    @property
    def header_bytes(self) -> int:
        return sum(len(block) for block in self.blocks.values())

    def write_skeleton(self, path: Path) -> None:
        """The file as the merger's dry run sees it: the blocks read, holes elsewhere
        (blocking)."""
        with open(path, "wb") as skeleton:
            for offset, block in sorted(self.blocks.items()):
                skeleton.seek(offset)
                skeleton.write(block)
            skeleton.truncate(self.size)


class _Ended(Exception):
    """The child ended (or was stopped) before its answer was complete."""


class _Dialogue:
    """The local end of the remote loop: requests to its stdin, answers from its stdout.

    At most ``cap`` bytes are taken from it: more is not our loop speaking, and
    the child is stopped.
    """

    def __init__(self, cap: int) -> None:
        self.child: ChildProcess | None = None
        self.received = 0
        self.expired = False
        self.flooded = False
        self._cap = cap
        self._lines: list[bytes] = []
        self._answers: list[list[bytes]] = []
        self._waiting: Deferred[list[bytes]] | None = None

    def start(self, child: ChildProcess) -> None:
        self.child = child
        child.wait().addCallback(self._ended)

    def line_received(self, line: bytes) -> None:
        self.received += len(line) + 1
        if self.received > self._cap:
            if not self.flooded and self.child is not None:
                self.flooded = True
                self.child.terminate(KILL_GRACE)
            return
        if line.strip() != b"E":
            self._lines.append(line.strip())
            return
        answer, self._lines = self._lines, []
        if self._waiting is None:
            self._answers.append(answer)
        else:
            waiting, self._waiting = self._waiting, None
            waiting.callback(answer)

    def ask(self, request: bytes | None = None) -> Deferred[list[bytes]]:
        """Send ``request`` (none for the greeting) and get the lines of its answer."""
        assert self.child is not None and self._waiting is None
        if request is not None and self.child.running:
            self.child.write(request + b"\n")
        if self._answers:
            return succeed(self._answers.pop(0))
        if not self.child.running:
            return fail(_Ended())
        self._waiting = Deferred()
        return self._waiting

    def finish(self) -> Deferred[ExitStatus]:
        """No more requests: the remote loop reads the end of its input and exits."""
        assert self.child is not None
        if self.child.running and self.child.transport is not None:
            self.child.transport.closeStdin()
        return self.child.wait()

    def expire(self) -> None:
        self.expired = True
        if self.child is not None:
            self.child.terminate(KILL_GRACE)

    def _ended(self, status: ExitStatus) -> ExitStatus:
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.errback(_Ended())
        return status


class _Walk:
    """The walk of one file from header to header, as ``fitsio.scan`` walks a local one,
    asking the remote loop for the blocks of each header."""

    def __init__(self, dialogue: _Dialogue, remote: RemoteFile, size: int, limit: int) -> None:
        self._dialogue = dialogue
        self._remote = remote
        self._where = remote.rsync_argument
        self.size = size
        self._limit = limit
        self.blocks: dict[int, bytes] = {}
        self._read = 0

    @inlineCallbacks
    def walk(self) -> Any:
        """Every header, HDU by HDU, to the end of the file."""
        offset, index = 0, 0
        while index == 0 or offset < self.size:
            found = yield self._header(offset, primary=index == 0)
            if found is None:
                if index == 0:
                    raise RemoteHeadersError(f"{self._where} is not a FITS file")
                self._check_padding(offset)
                return
            records, length = found
            if index == 0 and keyword_value(records, "SIMPLE") != "T":
                raise FitsFormatError("does not start with SIMPLE = T")
            offset += length + -(-data_size(records, index == 0) // BLOCK) * BLOCK
            index += 1
        if offset > self.size:
            raise FitsFormatError(
                f"truncated: HDU {index - 1} ends at byte {offset}, file has {self.size}"
            )

    @inlineCallbacks
    def _header(self, offset: int, primary: bool) -> Any:
        """``(records, length)`` of the header at ``offset``, or None when none begins there."""
        records: list[str] = []
        position = offset
        while True:
            left = self.size - position
            if left <= 0 and position > offset:
                raise FitsFormatError(f"header at byte {offset} has no END before the end of file")
            budget = (self._limit - self._read) // BLOCK
            if budget <= 0:
                raise RemoteHeadersError(
                    f"the headers of {self._where} are longer than {self._limit} bytes; "
                    "not read further"
                )
            count = min(budget, max(1, -(-left // BLOCK)))
            request = f"{position // BLOCK} {count} {int(position == offset)}".encode()
            answer = yield self._dialogue.ask(request)
            blocks = [self._decode(line) for line in answer]
            if not blocks or len(blocks) > count:
                raise self._unexpected(answer)
            for block in blocks:
                if len(block) != max(0, min(BLOCK, self.size - position)):
                    raise RemoteHeadersError(f"{self._where} changed while its headers were read")
                self.blocks[position] = block
                self._read += len(block)
                start = b"SIMPLE  =" if primary else b"XTENSION="
                if position == offset and not block.startswith(start):
                    return None
                if len(block) < BLOCK:
                    raise FitsFormatError(
                        f"header at byte {offset} has no END before the end of file"
                    )
                try:
                    text = block.decode("ascii")
                except UnicodeDecodeError:
                    raise FitsFormatError(f"header at byte {offset} is not ASCII") from None
                for at in range(0, BLOCK, RECORD):
                    record = text[at : at + RECORD]
                    if record[:8] == "END     ":
                        return records, position + BLOCK - offset
                    records.append(record)
                position += BLOCK

    def _check_padding(self, offset: int) -> None:
        """What follows the last HDU: zeros are padding (its first block is what is read)."""
        if self.blocks[offset].count(0) != len(self.blocks[offset]):
            raise FitsFormatError(
                f"{self.size - offset} bytes after the last HDU at byte {offset} are not a FITS HDU"
            )

    def _decode(self, line: bytes) -> bytes:
        tag, _, payload = line.partition(b" ")
        if tag != b"B":
            raise self._unexpected([line])
        try:
            return binascii.a2b_base64(payload)
        except binascii.Error:
            raise self._unexpected([line]) from None

    def _unexpected(self, answer: list[bytes]) -> RemoteHeadersError:
        return unexpected(self._remote, answer)


def unexpected(remote: RemoteFile, answer: list[bytes]) -> RemoteHeadersError:
    shown = answer[0][:80].decode(errors="replace") if answer else "nothing"
    return RemoteHeadersError(
        f"unexpected answer from {remote.host} while reading {remote.rsync_argument}: {shown!r}"
    )


def _size(remote: RemoteFile, answer: list[bytes]) -> int:
    if len(answer) == 1 and answer[0].startswith(b"S ") and answer[0][2:].strip().isdigit():
        return int(answer[0][2:])
    raise unexpected(remote, answer)


@inlineCallbacks
def read_remote_headers(runner: ProcessRunner, clock: IReactorTime, config: TransferConfig,
                        remote: RemoteFile, timeout: float,
                        limit: int = MAX_HEADER_BYTES) -> Any:  # fmt: skip
    """Read every header of ``remote`` over ssh; fires with ``RemoteHeaders``.

    Fails with ``RemoteHeadersError`` saying what went wrong: the host cannot be
    reached, the file is missing or not FITS, the time (``timeout`` seconds) or
    the bytes (``limit``) ran out.
    """
    argv = remote_script_argv(config, remote, COMMAND, SCRIPT, remote.path)
    dialogue = _Dialogue(cap=limit * 2 + (64 << 10))  # base64 is 4/3 of the bytes
    child = runner.spawn("ssh", argv, on_line=dialogue.line_received, keep_stdin=True)
    dialogue.start(child)
    expiry = clock.callLater(timeout, dialogue.expire)
    try:
        walk = _Walk(dialogue, remote, _size(remote, (yield dialogue.ask())), limit)
        yield walk.walk()
        yield dialogue.finish()
    except _Ended:
        status = yield child.wait()
        reason = _failure(child, status, dialogue, remote)
        raise RemoteHeadersError(reason, timed_out=dialogue.expired) from None
    except (FitsFormatError, RemoteHeadersError) as error:
        yield child.terminate(KILL_GRACE)
        if isinstance(error, RemoteHeadersError):
            raise
        raise RemoteHeadersError(f"{remote.rsync_argument} is not valid FITS: {error}") from None
    finally:
        if expiry.active():
            expiry.cancel()
    return RemoteHeaders(walk.size, walk.blocks, dialogue.received)


def _failure(child: ChildProcess, status: ExitStatus, dialogue: _Dialogue,
             remote: RemoteFile) -> str:  # fmt: skip
    """Why the child ended before the headers were read, in words."""
    where = remote.rsync_argument
    if dialogue.expired:
        return (f"no complete answer from {remote.host} in time while reading the headers "
                f"of {where}; stopped")  # fmt: skip
    if dialogue.flooded:
        return f"{remote.host} sent more than was asked while reading {where}; stopped"
    cannot_run = child.start_failure()
    if cannot_run is not None:
        return f"{cannot_run} — install ssh or set transfer.ssh"
    if status.code in _EXITS:
        return _EXITS[status.code].format(where=where, host=remote.host)
    detail = child.last_error_line()
    if status.code == 255:
        return f"cannot reach {remote.host} over ssh: {detail or status.describe()}"
    return f"reading the headers of {where} failed: {status.describe()}" + (
        f": {detail}" if detail else "")  # fmt: skip
