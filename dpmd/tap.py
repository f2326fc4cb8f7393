"""``twistd dpmd``: command-line options and the service tree twistd runs.

Start-up problems (a bad configuration key, a locked workspace, a port that
cannot be bound, a store that cannot be opened) end twistd with status 1 and
one line on stderr naming the problem, instead of a traceback — in twistd's
default daemon mode too, where the problems found after the fork would
otherwise be told only to the log file of a process that has no terminal.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.interfaces import IReactorTime
from twisted.python import usage

from dpmd.config import LOG_LEVELS, Config, ConfigError, build_config, read_config_file
from dpmd.lock import WorkspaceLock, WorkspaceLocked
from dpmd.logs import get_logger, set_log_level
from dpmd.server import DpmService, StartupError, report_startup_error

log = get_logger(__name__)


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the Data Product Manager. Values given here override the configuration "
        "file, which overrides $DATAROOT and the built-in defaults."
    )
    optParameters = [
        ["config", "c", None, "YAML configuration file (see etc/dpmd.yaml)."],
        ["workspace", "w", None, "Workspace directory, relative to dataroot [default: dpm]."],
        ["release-dir", None, None, "Where products go when a DAQ names no receivers."],
        ["log-level", None, None, f"Lowest level logged: {', '.join(LOG_LEVELS)} [default: info]."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """Twisted endpoint to serve on (repeatable) [default: tcp:12083:interface=127.0.0.1]."""
        self["listen"].append(endpoint)

    def overrides(self) -> dict[str, Any]:
        """The command-line values as dotted configuration keys."""
        values: dict[str, Any] = {
            "workspace": self["workspace"],
            "release_dir": self["release-dir"],
            "log_level": self["log-level"],
            "listen": self["listen"] or None,
        }
        return {name: value for name, value in values.items() if value is not None}


def load_config(options: Options) -> Config:
    file_values = read_config_file(options["config"]) if options["config"] else {}
    return build_config(file_values, options.overrides())


def build_service(config: Config, reactor: IReactorTime) -> DpmService:
    """Prepare the workspace, take its lock and build the service; raises ``StartupError``."""
    try:
        config.workspace.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StartupError(
            f"cannot create workspace {config.workspace}: {error.strerror}"
        ) from None
    lock = WorkspaceLock(config.workspace)
    try:
        lock.acquire()
    except WorkspaceLocked as error:
        raise StartupError(str(error)) from None
    except OSError as error:
        raise StartupError(f"cannot lock workspace {config.workspace}: {error.strerror}") from None
    set_log_level(config.log_level)
    try:
        return DpmService(config, reactor, lock)
    except StartupError:
        lock.release()
        raise


class StartupFailed(Exception):
    """Raised to twistd after a start-up problem was reported (daemon mode)."""


class StartupGuard(MultiService):
    """The root twistd sees: turns a failed start into one line on stderr and status 1.

    In daemon mode twistd forks before the services start, and the process
    that launched it waits for a word from the daemon.  The guard keeps a copy
    of the launcher's stderr from before the fork: a problem is written there
    as one line, and raised as an ordinary exception, on which twistd removes
    its pid file and makes the launcher exit with status 1.  In the
    foreground the line goes to stderr and the process exits with status 1.
    """

    def __init__(self, daemon: bool) -> None:
        super().__init__()
        self._daemon = daemon
        self._launcher_stderr: int | None = os.dup(2) if daemon else None
        if self._launcher_stderr is not None:
            os.set_inheritable(self._launcher_stderr, False)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except StartupError as error:
            self._fail(error)

    def startService(self) -> None:
        try:
            super().startService()
        except StartupError as error:
            self._fail(error)
        self._forget_launcher()

    def _fail(self, error: StartupError) -> None:
        log.critical("dpmd cannot start: {reason}", reason=str(error))
        if self._launcher_stderr is None:
            report_startup_error(error)
            raise SystemExit(1) from None
        os.write(self._launcher_stderr, f"dpmd: {error}\n".encode(errors="replace"))
        self._forget_launcher()
        raise StartupFailed(str(error)) from None

    def _forget_launcher(self) -> None:
        """Once started, keep no descriptor of the launcher's terminal open."""
        if self._launcher_stderr is not None:
            os.close(self._launcher_stderr)
            self._launcher_stderr = None


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    try:
        service = build_service(load_config(options), reactor)
    except (ConfigError, StartupError) as error:
        report_startup_error(error)
        raise SystemExit(1) from None
    twistd_options = getattr(options, "parent", None)
    daemon = twistd_options is not None and not twistd_options.get("nodaemon", True)
    root = StartupGuard(daemon)
    service.setServiceParent(root)
    return root
