"""dpmd: the Data Product Manager of a telescope's data-acquisition system.

dpmd accepts Data Product Specifications over line-delimited JSON-RPC 2.0,
collects the source FITS files, merges them into one data product with the
``dpmd-merge`` program and releases the product to its receivers.

``dpmd.__version__`` is the version of the installed distribution (its
metadata, so there is one place to change it: setup.cfg). Run from a source
tree that was never installed, it is ``0+unknown``. It is looked up on first
use, so importing dpmd (as every merger child does) costs nothing for it.
"""

from __future__ import annotations

import functools

#: The version when no installed distribution "dpmd" can be found.
UNKNOWN_VERSION = "0+unknown"


@functools.cache
def _installed_version() -> str:
    from importlib import metadata

    try:
        return metadata.version(__name__)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _installed_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
