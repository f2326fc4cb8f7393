"""The table of configuration keys: the one place a key is declared.

Each ``Key`` gives a key's dotted name, its kind (type and bounds), its
default, its help and the field of ``Config`` it fills.  Loading checks values
against it and builds ``Config`` from it; ``--print-config`` writes it back;
README.md's table of keys and ``etc/dpmd.yaml`` are made from it
(``python -m dpmd.config.docs``, and a test fails when they differ).

Help is written once, in the words of README.md's table (``code`` in
backticks); ``notes`` are lines ``etc/dpmd.yaml`` adds, and ``SECTIONS`` the
paragraph it puts before a section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .kinds import (
    BOOLEAN,
    ENDPOINT_OR_NULL,
    ENDPOINTS,
    IDENTITIES,
    LOG_LEVEL,
    PATH,
    PATHS_UNDER_DATAROOT,
    RESERVE,
    TEXT,
    TEXTS,
    UNDER_DATAROOT,
    Kind,
    integer,
    positive,
)

SECONDS = positive("seconds")


@dataclass(frozen=True)
class Key:
    """One configuration key.

    ``field`` is where its value goes in ``Config`` (``"limits.daq"``:
    ``config.limits.daq``; ``"release_allowed"``: ``config.release_allowed``),
    by default its name.  ``option`` is the ``twistd dpmd`` option that sets it;
    ``unset`` says what a ``null`` default stands for, and ``example`` is the
    value ``etc/dpmd.yaml`` shows, commented out, for such a key.
    """

    name: str
    kind: Kind
    default: Any
    help: str
    field: str = ""
    option: str = ""
    unset: str = ""
    example: str = ""
    notes: tuple[str, ...] = ()

    @property
    def attribute(self) -> str:
        """The dotted attribute path of the key's value in ``Config``."""
        return self.field or self.name

    @property
    def section(self) -> str:
        """The section the key is written under in YAML ("" for the top level)."""
        return self.name.rpartition(".")[0]


KEYS: tuple[Key, ...] = (
    Key("dataroot", PATH, None,
        "root of relative paths (`workspace`, `release_dir`, `release.allowed`) and of local "
        "source locations that are not absolute",
        unset="`$DATAROOT`, else the current directory", example="/data"),
    Key("create_dataroot", BOOLEAN, False,
        "create `dataroot` when it does not exist; else a missing `dataroot` stops start-up, "
        "naming it: a typo, or a data disk that is not mounted, must not put products on "
        "another file system", option="--create-dataroot"),
    Key("workspace", UNDER_DATAROOT, "dpm",
        "the DAQ workspace (queue, per-DAQ folders, archive); `QueryStorageStatus` and "
        "`/dpm/storage` report the file system that holds it", option="--workspace"),
    Key("listen", ENDPOINTS, ("tcp:12083:interface=127.0.0.1",),
        "Twisted endpoint strings to serve on; the option, repeated, replaces the list",
        option="--listen", notes=(
            "  tcp:12083:interface=127.0.0.1     TCP, local clients only (the default)",
            '  unix:/run/dpmd/dpmd.sock          a UNIX socket, mode 0600 unless ":mode=660" etc.',
            "  ssl:12083:privateKey=key.pem:certKey=cert.pem    TLS",
            "  mtls:12084:privateKey=key.pem:certKey=cert.pem:caCert=ca.pem",
            "                                    TLS with client certificates of that CA;",
            "                                    see access below and docs/security.md",
        )),
    Key("release_dir", UNDER_DATAROOT, "released",
        "where a product goes when its specification names no receivers",
        option="--release-dir"),
    Key("log_level", LOG_LEVEL, "info", "lowest level of dpmd's own log events",
        option="--log-level"),
    Key("python", PATH, None,
        "the Python interpreter that runs dpmd's child programs (the merger `dpmd-merge`, "
        "the copier, the checksum program)",
        unset="the server's own", example="/opt/dpmd/bin/python3"),
    Key("limits.daq", integer(1), 1,
        "DAQs past `Scheduled` (collecting, merging, releasing) at once"),
    Key("limits.merge", integer(1), 1, "merges (`dpmd-merge` processes) at once"),
    Key("limits.transfer", integer(1), 2, "file transfers at once"),
    Key("max_line_bytes", integer(1024), 16 * 1024 * 1024,
        "longest request line a client may send, in bytes; a longer one is answered with "
        "error -32600 and the connection is closed"),
    Key("storage_interval", SECONDS, 60.0,
        "seconds between two samples on the `/dpm/storage` topic"),
    Key("shutdown_timeout", SECONDS, 30.0,
        "seconds a child process has to end after SIGTERM before it gets SIGKILL; also the "
        "longest wait for clients to be answered on `/dpm/Exit`"),
    Key("transfer.rsync", TEXT, "rsync", "the rsync program"),
    Key("transfer.rsync_options", TEXTS, (),
        'more rsync options, e.g. `["--bwlimit=50m"]` to spare the network'),
    Key("transfer.ssh", TEXT, "ssh",
        "the ssh program (rsync's `-e`, and the final rename at receivers)"),
    Key("transfer.ssh_options", TEXTS, ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10"),
        'options of every ssh; add `["-F", "/etc/dpmd/ssh_config"]` for a configuration of '
        "dpmd's own"),
    Key("transfer.timeout", SECONDS, 120.0,
        "seconds without any output from rsync before the transfer is stopped"),
    Key("transfer.retries", integer(0), 2,
        "retries of a failed transfer before the DAQ gets an alert"),
    Key("transfer.retry_delay", SECONDS, 5.0, "seconds before the first retry; doubles at each"),
    Key("watchdog.stall", SECONDS, 60.0,
        "seconds a stage's child may be silent before the Warning alert `StageStalled`, plus "
        "the time its input takes at `watchdog.rate`"),
    Key("watchdog.kill", SECONDS, 300.0,
        "seconds of silence (plus the same) before the child is stopped and the stage fails; "
        "more than `watchdog.stall`"),
    Key("watchdog.rate", integer(1), 100 * 1024 * 1024,
        "bytes per second: both budgets grow by the time the DAQ's input takes at this rate"),
    Key("archive.keep_days", positive("days"), 30.0,
        "days an archived DAQ's folder (its logs) is kept; its record stays in the store "
        "for ever"),
    Key("archive.check_interval", SECONDS, 3600.0,
        "seconds between two runs of the retention task"),
    Key("release.allowed", PATHS_UNDER_DATAROOT, (".",),
        "directories a receiver on this host may be under; `release_dir` always may, the "
        "workspace never; anything else, `..` included, is refused at `QueueDaq`",
        field="release_allowed", notes=(
            'Add the archive\'s ingestion directory, e.g. [".", "/archive/ingest"];',
            'leave "." out to keep receivers out of dataroot.',
        )),
    Key("storage.max_age", SECONDS, 1.0,
        "oldest storage sample `QueryStorageStatus` is answered from; one sample serves every "
        "query in the meantime",
        field="storage_max_age"),
    Key("storage.reserve", RESERVE, "5%",
        "space stages leave free, in bytes or of the workspace's file system: below it no "
        "new stage starts and the DAQ waits with the Warning alert `StorageLow`, going on by "
        "itself when space returns (`QueueDaq` still accepts)",
        field="storage_reserve"),
    Key("max_connections", integer(1), 200,
        "client connections at once, all listeners together; one more is closed as soon as "
        "it is accepted, and the refusal is logged"),
    Key("max_buffered_bytes", integer(1024), 64 * 1024 * 1024,
        "request bytes read and not yet handled, all connections together; at least "
        "`max_line_bytes`. The first 64 KiB of each connection do not count, so small "
        "requests always get through; a connection that would take more waits (dpmd stops "
        "reading it) until others have been handled"),
    Key("access.control", IDENTITIES, (),
        "certificate identities allowed every method on `mtls:` listeners"),
    Key("access.read", IDENTITIES, (),
        "identities allowed the `Get*` methods, `QueryStorageStatus`, `Subscribe` and "
        "`Unsubscribe` on `mtls:` listeners; none may be in `access.control` too"),
    Key("metrics.listen", ENDPOINT_OR_NULL, None,
        "Twisted endpoint of the Prometheus/OpenMetrics page `/metrics` (see *Metrics* in "
        'README.md), e.g. `"tcp:9108:interface=127.0.0.1"`; it needs no password: keep it on '
        "loopback or behind a firewall; `null` or `\"\"` serves none",
        field="metrics_listen", unset="off"),
)  # fmt: skip
KEYS_BY_NAME = {key.name: key for key in KEYS}
#: The sections keys are written under: "limits", "transfer", ...
SECTION_NAMES = frozenset(key.section for key in KEYS) - {""}

#: The paragraph ``etc/dpmd.yaml`` puts before a section's keys.
SECTIONS = {
    "limits": "Concurrency bounds.",
    "transfer": (
        'Remote sources ("host:/path", "user@host:/path") and receivers with a host are '
        "reached with rsync over ssh. Both must work without a password for the account dpmd "
        "runs as (keys, ssh-agent or an ssh_config of its own)."
    ),
    "watchdog": (
        "The stall watchdog: every child of a stage (merger, copier, rsync, checksum) must "
        "write something now and then. Silent for `stall` seconds, the DAQ gets the Warning "
        "alert StageStalled (it clears when the child speaks again); silent for `kill` "
        "seconds, the child is stopped and the stage fails with an Error alert "
        "(RetryMergeDaq runs it again). Both grow by the time the DAQ's input would take to "
        "write at `rate` bytes per second."
    ),
    "archive": (
        "Finished DAQs: their records stay in the store (dpmd.sqlite3) for ever; their "
        "folders in archive/ (the merger's logs) are removed after keep_days, a few at a "
        "time, by a task that runs every check_interval seconds."
    ),
    "storage": "The space the workspace's file system has (QueryStorageStatus, /dpm/storage).",
    "access": (
        "Who may do what on mtls: listeners (see docs/security.md): identities are the "
        "subject CN or a DNS name of the client certificate, compared without regard to "
        "case. Anyone else is disconnected once the handshake completes. Plain tcp: (on "
        "loopback), ssl: and unix: listeners do not authenticate clients and allow "
        "everything."
    ),
    "metrics": (
        "The Prometheus/OpenMetrics page, served over HTTP (etc/grafana-dpmd.json is a "
        "dashboard for it)."
    ),
}
