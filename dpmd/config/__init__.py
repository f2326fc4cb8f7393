"""dpmd's configuration: built-in defaults < ``$DATAROOT`` < YAML file < command line.

Every key is declared once, in the table of ``keys`` (its kind, default, help
and the field it fills), so that loading, ``--print-config``, README.md's table
and ``etc/dpmd.yaml`` cannot drift apart.  The rooms:

* ``kinds``: the types and bounds of values, checked and described;
* ``keys``: the table;
* ``model``: ``Config`` and its sections, built from the table and written back;
* ``load``: the layers and the checks (of one key, then of several);
* ``unknown``: unknown keys, each named with the nearest known one;
* ``errors``: ``ConfigError``, naming the key and the problem;
* ``docs``: README.md's table and ``etc/dpmd.yaml``, made from the table.
"""

from dpmd.logs import LEVELS as LOG_LEVELS

from .errors import ConfigError
from .keys import KEYS, KEYS_BY_NAME, Key
from .load import build_config, read_config_file
from .model import (
    AccessConfig,
    ArchiveConfig,
    Config,
    Limits,
    TransferConfig,
    WatchdogConfig,
    effective_document,
)
from .unknown import UnknownKeys

__all__ = [
    "KEYS",
    "KEYS_BY_NAME",
    "LOG_LEVELS",
    "AccessConfig",
    "ArchiveConfig",
    "Config",
    "ConfigError",
    "Key",
    "Limits",
    "TransferConfig",
    "UnknownKeys",
    "WatchdogConfig",
    "build_config",
    "effective_document",
    "read_config_file",
]
