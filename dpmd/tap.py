"""``twistd dpmd``: command-line options and the service tree twistd runs.

Start-up problems (a bad configuration key, a locked workspace, a port that
cannot be bound, a store that cannot be opened) end twistd with status 1 and
one line on stderr naming the problem, instead of a traceback — in twistd's
default daemon mode too, where the problems found after the fork would
otherwise be told only to the log file of a process that has no terminal.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import yaml
from twisted.application.service import IService, MultiService
from twisted.internet.interfaces import IReactorTime
from twisted.python import usage

import dpmd
from dpmd.collector import FreezeAfterStart
from dpmd.config import (
    LOG_LEVELS,
    Config,
    ConfigError,
    build_config,
    effective_document,
    read_config_file,
)
from dpmd.lock import WorkspaceLock, WorkspaceLocked
from dpmd.logs import LogWriter, get_logger, reopen_logs, set_log_level, twistd_log_files
from dpmd.server import DpmService, StartupError, report_startup_error

log = get_logger(__name__)


EXAMPLE_CONFIG = Path(dpmd.__file__).parent / "etc" / "dpmd.yaml"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the Data Product Manager. Values given here override the configuration "
        "file, which overrides $DATAROOT and the built-in defaults. An example "
        f"configuration naming every key is installed at {EXAMPLE_CONFIG}."
    )
    optFlags = [
        ["create-dataroot", None, "Create dataroot if it does not exist (else refuse to start)."],
        ["print-config", None, "Print the configuration in force (file, $DATAROOT, options) "
                               "as YAML, and exit."],
    ]  # fmt: skip
    optParameters = [
        ["config", "c", None, f"YAML configuration file (example: {EXAMPLE_CONFIG})."],
        ["workspace", "w", None, "Workspace directory, relative to dataroot [default: dpm]."],
        ["release-dir", None, None, "Where products go when a DAQ names no receivers."],
        ["log-level", None, None, f"Lowest level logged: {', '.join(LOG_LEVELS)} [default: info]."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_version(self) -> None:
        """Print dpmd's version and exit."""
        print(f"dpmd {dpmd.__version__}")
        raise SystemExit(0)

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
            "create_dataroot": True if self["create-dataroot"] else None,
        }
        return {name: value for name, value in values.items() if value is not None}


def load_config(options: Options) -> Config:
    file_values = read_config_file(options["config"]) if options["config"] else {}
    return build_config(file_values, options.overrides())


def build_service(config: Config, reactor: IReactorTime) -> DpmService:
    """Prepare the workspace, take its lock and build the service; raises ``StartupError``."""
    if not config.dataroot.is_dir():
        if not config.create_dataroot:
            raise StartupError(
                f"dataroot {config.dataroot} does not exist (a typo, or a data disk that is not "
                "mounted?); create it, or start with --create-dataroot"
            )
        try:
            config.dataroot.mkdir(parents=True)
        except OSError as error:
            raise StartupError(
                f"cannot create dataroot {config.dataroot}: {error.strerror}"
            ) from None
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
        install_signal_handlers()  # before the first client can connect
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


def install_signal_handlers() -> None:
    """SIGHUP stops dpmd cleanly, as SIGTERM does; SIGUSR1 reopens its log files.

    A stop commits every record, stops the children (SIGTERM, then SIGKILL
    after ``shutdown_timeout``) and ends twistd (status 0 after SIGHUP; after
    SIGTERM twistd ends by that signal, its convention); the DAQs resume at the
    next start.  Only ``twistd dpmd`` installs them: an embedding program keeps
    its own.
    """
    from twisted.internet import reactor

    def stop(signum: int, frame: object) -> None:
        log.info("{signal} received: stopping", signal=signal.Signals(signum).name)
        reactor.callFromThread(reactor.stop)  # type: ignore[attr-defined]

    def reopen(signum: int, frame: object) -> None:
        reactor.callFromThread(reopen_logs, twistd_log_files(previous))  # type: ignore[attr-defined]

    previous = signal.getsignal(signal.SIGUSR1)
    # SIGTERM too: the reactor installs its own only once it runs, after start-up.
    for stopping in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(stopping, stop)
    signal.signal(signal.SIGUSR1, reopen)


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    try:
        config = load_config(options)
        if options["print-config"]:
            print(yaml.safe_dump(effective_document(config), sort_keys=False), end="")
            raise SystemExit(0)
        service = build_service(config, reactor)
    except (ConfigError, StartupError) as error:
        report_startup_error(error)
        raise SystemExit(1) from None
    twistd_options = getattr(options, "parent", None)
    daemon = twistd_options is not None and not twistd_options.get("nodaemon", True)
    root = StartupGuard(daemon)
    LogWriter().setServiceParent(root)  # first: started first, stopped last
    service.setServiceParent(root)
    FreezeAfterStart().setServiceParent(root)  # last: once the store is recovered
    return root
