"""The DAQ core: everything that happens to a DAQ between ``QueueDaq`` and its archive.

At the top, the rooms every command meets:

* ``manager.py`` — the façade: builds the rooms at start-up, hands each command to
  its room, files away the DAQs the rooms announce finished;
* ``lifecycle.py`` — one DAQ (``Daq``): its transition table, its alerts, its
  changes (each committed through ``persist/committer.py``, then published);
* ``queue.py`` — the unfinished DAQs in queue order, and which one starts next;
* ``control.py`` — ``AbortDaq``, ``RetryMergeDaq``, and going on after a restart;
* ``queries.py`` — the status commands; ``archive.py`` — finished DAQs' folders;
* ``observers.py`` — what the lower rooms announce to the rooms above.

Below them, three parts:

* ``admission/`` — where a ``QueueDaq`` is checked and taken in (and ``CheckDaq``'s
  dry run);
* ``running/`` — where a DAQ's stages are started, watched and ended;
* ``persist/`` — where a DAQ is made durable: the store, its journal, start-up
  recovery, the audit, and the committer every change goes through.

Control flows down: a lower room returns a Deferred or announces to observers,
and never calls back up into the room that made it.
"""
