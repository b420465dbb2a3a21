"""Orchestration: the workflows that move data between the science (``dff_core``) and ``storage``, the one
validator and enqueuer for every action (``submit``, ``study``), user-facing errors (``errors``), and the
background workers (queue in ``storage.queue``; live progress, cancel, retry, resume). Imports ``dff_core`` and
``storage``, never a front end."""
