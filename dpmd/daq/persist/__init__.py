"""Persistence: where a DAQ is made durable.

* ``store.py`` — the SQLite store (blocking; WAL, ``synchronous=FULL``);
* ``journal.py`` — the store as the reactor sees it: group commit on one writer
  thread, look-ups on a reader thread;
* ``committer.py`` — every change of a DAQ: committed, then published;
* ``recovery.py`` — start-up: the store opened, an old workspace imported once, the
  unfinished DAQs loaded;
* ``audit.py`` — ``AuditWorkspace``: the store and the files checked against each
  other.
"""
