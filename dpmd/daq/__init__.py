"""DAQs: the lifecycle of one (``lifecycle``) and the manager of all (``manager``)."""
