"""``twistd dpmd``: command-line options and the service tree twistd runs.

Start-up problems (a bad configuration key, a locked workspace, a port that
cannot be bound, a store that cannot be opened) end twistd with status 1 and
one line on stderr naming the problem, instead of a traceback — in twistd's
default daemon mode too, where the problems found after the fork would
otherwise be told only to the log file of a process that has no terminal
(``dpmd/launcher.py`` says how).  The log gets the same line, and a start
that fails before it serves leaves no folder behind that it made itself.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, NoReturn

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
from dpmd.launcher import Launcher
from dpmd.lock import WorkspaceLock, WorkspaceLocked
from dpmd.logs import LogWriter, get_logger, reopen_logs, set_log_level, twistd_log_files
from dpmd.server import DpmService, StartupError, report_startup_error

log = get_logger(__name__)


EXAMPLE_CONFIG = Path(dpmd.__file__).parent / "etc" / "dpmd.yaml"


class Options(usage.Options):
    """``twistd dpmd``'s command line: overrides of the configuration, and where it is."""

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


class MadeFolders:
    """The folders one start made (dataroot, workspace): what a failed start removes again.

    Only folders that did not exist are recorded, and they are removed with
    ``rmdir``, which refuses a folder that is not empty: an existing
    workspace, or whatever was put into a new one meanwhile, is never removed.
    """

    def __init__(self) -> None:
        self._made: list[Path] = []

    def __contains__(self, folder: Path) -> bool:
        return folder in self._made

    def make(self, folder: Path) -> None:
        """``mkdir -p folder``, remembering each folder it made; raises ``OSError``."""
        missing = []
        for path in (folder, *folder.parents):
            if path.is_dir():
                break
            missing.append(path)
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                continue  # made meanwhile by someone else: not this start's to remove
            self._made.append(path)

    def remove(self) -> None:
        """Remove the folders made, deepest first, as long as they are empty."""
        while self._made:
            path = self._made.pop()
            try:
                path.rmdir()
            except OSError as error:
                log.warn("left {folder} in place: {reason}", folder=str(path),
                         reason=error.strerror)  # fmt: skip
                self._made.clear()  # its parents are not empty either


def build_service(
    config: Config, reactor: IReactorTime, made: MadeFolders | None = None
) -> DpmService:
    """Prepare the workspace, take its lock and build the service; raises ``StartupError``.

    The folders it makes are recorded in ``made``; when it fails, it removes them again.
    """
    made = MadeFolders() if made is None else made
    try:
        return _build_service(config, reactor, made)
    except StartupError:
        made.remove()
        raise


def _build_service(config: Config, reactor: IReactorTime, made: MadeFolders) -> DpmService:
    if not config.dataroot.is_dir():
        if not config.create_dataroot:
            raise StartupError(
                f"dataroot {config.dataroot} does not exist (a typo, or a data disk that is not "
                "mounted?); create it, or start with --create-dataroot"
            )
        try:
            made.make(config.dataroot)
        except OSError as error:
            raise StartupError(
                f"cannot create dataroot {config.dataroot}: {error.strerror}"
            ) from None
    try:
        made.make(config.workspace)
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
        release(lock, made)
        raise


def release(lock: WorkspaceLock, made: MadeFolders) -> None:
    """Let go of the workspace; its lock file too when this start made the workspace."""
    lock.release()
    if lock.path.parent in made:
        lock.path.unlink(missing_ok=True)


class StartupGuard(MultiService):
    """The root twistd sees: turns a failed start into one line on stderr and status 1.

    The line goes to the log too, without a traceback (the problem is the
    operator's to fix, not a bug), and the start leaves nothing behind: the
    workspace lock is let go, the folders this start made are removed, and
    so is twistd's pid file.  In daemon mode twistd forks before the services
    start; the line goes to the launching ``twistd``'s stderr, which then
    ends with status 1 (``Launcher``).
    """

    def __init__(
        self,
        lock: WorkspaceLock,
        made: MadeFolders,
        launcher: Launcher | None = None,
        pidfile: str | None = None,
    ) -> None:
        super().__init__()
        self._lock = lock
        self._made = made
        self._launcher = launcher
        self._pidfile = pidfile

    def privilegedStartService(self) -> None:
        if self._launcher is not None:
            self._launcher.forked()
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
        if self._launcher is not None:
            self._launcher.forget()

    def _fail(self, error: StartupError) -> NoReturn:
        log.critical("dpmd cannot start: {reason}", reason=str(error))
        release(self._lock, self._made)
        self._made.remove()
        self._remove_pidfile()
        if self._launcher is None:
            report_startup_error(error)
        else:
            self._launcher.fail(f"dpmd: {error}")
        # Not an exception: twistd would print its traceback, and in daemon mode write
        # its repr to a launcher that has already said why.
        raise SystemExit(1) from None

    def _remove_pidfile(self) -> None:
        """twistd's pid file, which it removes itself only when start-up raised an exception."""
        if not self._pidfile:
            return
        path = Path(self._pidfile)
        try:
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()
        except OSError:
            pass  # none, or not ours to remove


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

    made = MadeFolders()
    try:
        config = load_config(options)
        if options["print-config"]:
            print(yaml.safe_dump(effective_document(config), sort_keys=False), end="")
            raise SystemExit(0)
        service = build_service(config, reactor, made)
    except (ConfigError, StartupError) as error:
        report_startup_error(error)
        raise SystemExit(1) from None
    twistd_options = getattr(options, "parent", None) or {}
    daemon = not twistd_options.get("nodaemon", True)
    launcher = Launcher.here() if daemon else None  # this process, before twistd forks
    root = StartupGuard(service.lock, made, launcher, twistd_options.get("pidfile"))
    LogWriter().setServiceParent(root)  # first: started first, stopped last
    service.setServiceParent(root)
    FreezeAfterStart().setServiceParent(root)  # last: once the store is recovered
    return root
