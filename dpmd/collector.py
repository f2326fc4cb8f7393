"""The garbage collector's share of a long-running server: no pause a client can see.

A full collection traverses every object the collector tracks.  Most of a
server's objects live as long as it does — its modules, classes and functions,
and the DAQs it recovered — and traversing them is all a full collection
would do with them: with 13,000 DAQs in memory it stalled the reactor for
tens of milliseconds.  Once start-up is over (the store recovered, the
listeners bound), ``FreezeAfterStart`` collects once and moves everything
alive to the collector's permanent generation (``gc.freeze``), which no
collection traverses again.  What is frozen is still freed by its reference
count when the last reference goes: a DAQ holds no reference cycle
(``dpmd.daq.lifecycle.Daq``), so a finished one is freed at once, frozen or
not.  A DAQ queued later costs a collection one object while it waits.
"""

from __future__ import annotations

import gc

from twisted.application.service import Service

from dpmd.logs import get_logger

log = get_logger(__name__)


def freeze_what_lives_long() -> int:
    """Collect once, then freeze every object alive; how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class FreezeAfterStart(Service):
    """A service that, started after the others, freezes what they made at start-up."""

    def startService(self) -> None:
        super().startService()
        frozen = freeze_what_lives_long()
        log.debug("{count} objects of the start-up frozen for the collector", count=frozen)
