"""Running: where a DAQ's stages are started, watched and ended.

* ``pipeline.py`` — starts each stage run, ends it with one commit (or its Error
  alerts), retries it, halts it; announces finished DAQs and stage ends;
* ``stage_table.py`` — every fact about the stages, in one table (``STAGES``);
* ``host.py`` — what a running stage may use of its DAQ and of the server
  (``dpmd.stages.StageHost``);
* ``reserve.py`` — no stage starts below the storage reserve;
* ``watchdog.py`` — a silent child is warned about, then stopped.

The stages themselves (collect, merge, release) are ``dpmd.stages``.
"""
