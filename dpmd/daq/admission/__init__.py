"""Admission: where a ``QueueDaq`` is checked and taken in.

* ``intake.py`` — ``QueueDaq`` itself: each arrival checked (here, or by the
  vetting child when arrivals come faster than commits), committed, queued and
  answered, in order of arrival, idempotently;
* ``vetting.py`` — the checks of one specification (schema, keyword rules, the
  server's rules), and the vetting child's program (``python -m
  dpmd.daq.admission.vetting``);
* ``validator.py`` — the vetting child's parent in the server;
* ``rules.py`` — the server's own rules for a specification (locations,
  receivers, confinement), pure functions;
* ``dry_run.py`` — ``CheckDaq``: the whole DAQ checked, nothing queued or written.
"""
