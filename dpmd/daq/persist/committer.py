"""Commit, then publish: the one way a DAQ's change reaches the store and its clients.

Every change of a DAQ (``Daq.change``) comes here.  The journal makes it
durable; once it is, the DAQ takes it as its record and its status goes to
the ``/daq/status`` topic — clients never see a state a crash could take
back.  A change the store refuses becomes the DAQ's ``WorkspaceError``
(held in memory: an alert saying the store failed cannot wait for the
store), is published, and is told to the ``refused`` observers (the pipeline
stops the DAQ's stage).  A new DAQ, whose first record the intake has
committed, is made here (``daq``) so that it commits through here too.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from dpmd.daq.lifecycle import Daq
from dpmd.daq.observers import Observers
from dpmd.daq.persist.journal import Journal
from dpmd.daq.persist.store import StoreError, Update
from dpmd.logs import get_logger
from dpmd.record import DaqRecord
from dpmd.topics import TopicHub

log = get_logger(__name__)

STATUS_TOPIC = "/daq/status"


class Committer:
    """Backs every ``Daq``: commits its changes through the journal, then publishes them.

    Publishes on the ``/daq/status`` topic (which the manager registers at once, so that
    a client may subscribe before the store is open); calls the journal and the hub only.
    """

    def __init__(self, journal: Journal, hub: TopicHub, clock: IReactorTime) -> None:
        self._journal = journal
        self._hub = hub
        self._clock = clock
        self._commit = self.commit
        """One bound method that every DAQ shares (not an object of each)."""
        self.refused: Observers[Daq] = Observers()
        """Told of a DAQ whose change the store refused (before its alert is published)."""

    def daq(self, record: DaqRecord) -> Daq:
        """The DAQ of a committed record, committing through here from now on."""
        return Daq(record, self._clock, self._commit)

    def commit(self, daq: Daq, record: DaqRecord) -> Deferred[None]:
        """Commit, then publish — always.  A refusal of the store is the DAQ's alert."""
        change = Update(daq.id, record.encode(), record.substate.value, record.finished_at,
                        archived=record.substate.is_final)  # fmt: skip

        def committed(_: Any) -> None:
            daq.committed(record)
            self.publish(daq)

        def refused(failure: Failure) -> Failure:
            failure.trap(StoreError)
            log.error("DAQ {daq_id}: the store refused a change: {reason}", daq_id=daq.id,
                      reason=str(failure.value))  # fmt: skip
            daq.not_committed(str(failure.value))
            self.refused.tell(daq)
            self.publish(daq)
            return failure

        return self._journal.commit(change).addCallbacks(committed, refused)

    def publish(self, daq: Daq) -> None:
        """The DAQ's status to the topic's subscribers (its committed record, and the
        store's failure if there is one).  With nobody subscribed nothing is encoded: a
        status call encodes the status when it asks (once per change, either way)."""
        if self._hub.subscriber_count(STATUS_TOPIC):
            self._hub.publish(STATUS_TOPIC, daq.encoded_status(), daq.id)
