"""Background jobs: a queue in storage, worker processes, live progress, cancel, retry, resume."""
