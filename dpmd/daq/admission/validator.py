"""The vetting child: QueueDaq's checks on the other core while the reactor answers.

One child (``python -m dpmd.daq.admission.vetting``, started with the server,
and again at the next request that needs it if it ended) checks specifications
in the order they are sent and answers each with a line. Until it says it is
ready (its first line; a tenth of a second after it is started), the intake
checks on the reactor what it would have sent it: the burst that often follows
a start is not held up by the child's start. If it ends, every request it
still held fails with ``ValidatorGone``, naming how it ended: the coordinator
sends those again, and the next request starts a new child. They are not
checked on the reactor instead, since what ended the child may be one of them.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from dpmd.config import Config
from dpmd.daq.admission.vetting import READY, Rules, request
from dpmd.logs import get_logger
from dpmd.workers import ChildProcess, ExitStatus, ProcessRunner, python_command

log = get_logger(__name__)

MODULE = "dpmd.daq.admission.vetting"


class ValidatorGone(Exception):
    """The vetting child ended before it answered."""


class Validator:
    """The parent of the vetting child: starts it with the server (and at the next request
    that needs it, if it ended), writes it requests and matches its answers, in order."""

    def __init__(self, runner: ProcessRunner, config: Config) -> None:
        self._runner = runner
        rules = Rules(config.release_allowed, config.workspace)
        self._argv = python_command(config.python, MODULE, rules.to_json())
        self._child: ChildProcess | None = None
        self._waiting: deque[Deferred[dict[str, Any]]] = deque()
        self._stopping = False
        self._ready = False

    def start(self) -> None:
        """Start the child now, so that it is ready for the first burst."""
        if self._child is None and not self._stopping:
            self._start()

    @property
    def ready(self) -> bool:
        """True once the child has said it is ready (and until it ends)."""
        return self._ready

    def stop(self) -> None:
        """The server is stopping: the child's end (the runner stops every child) is
        expected from now on, and no new child is started."""
        self._stopping = True

    def vet(self, text: bytes) -> Deferred[dict[str, Any]]:
        """Fires with ``dpmd.daq.admission.vetting.vet`` of ``text`` as the child found it."""
        if self._stopping and self._child is None:
            return fail(ValidatorGone("the server is stopping"))
        child = self._child if self._child is not None else self._start()
        answer: Deferred[dict[str, Any]] = Deferred()
        self._waiting.append(answer)
        child.write(request(text))
        return answer

    def _start(self) -> ChildProcess:
        child = self._runner.spawn("validator", self._argv, on_line=self._answered,
                                   keep_stdin=True)  # fmt: skip
        child.wait().addCallback(self._ended, child)
        self._child = child
        self._ready = False
        log.info("validator started (pid {pid})", pid=child.pid)
        return child

    def _answered(self, line: bytes) -> None:
        if not self._ready and line == READY:
            self._ready = True
            return
        if not self._waiting:
            log.error("the validator wrote a line nobody asked for: {line!r}", line=line[:200])
            return
        answer = self._waiting.popleft()
        try:
            answer.callback(json.loads(line))
        except ValueError:
            answer.errback(Failure(ValidatorGone("the validator's answer is not JSON")))

    def _ended(self, status: ExitStatus, child: ChildProcess) -> None:
        if self._child is child:
            self._child = None
            self._ready = False
        waiting, self._waiting = self._waiting, deque()
        how = child.start_failure() or status.describe()
        if waiting or not (status.ok or self._stopping):
            log.error("the validator (pid {pid}) ended ({how}); {count} request(s) unanswered;"
                      " its last words: {last!r}", pid=child.pid, how=how, count=len(waiting),
                      last=child.last_error_line())  # fmt: skip
        for answer in waiting:
            answer.errback(Failure(ValidatorGone(f"the validator process ended ({how})")))
