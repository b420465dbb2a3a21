"""What a job handler sees (``JobContext``): progress reporting, logging and the cancel flag, written to the
job's row. Apart from ``jobs.runner`` so that the handlers it runs need not import the runner back.

Every write goes out under the job's claim (``owner``, a ``storage.owners.Owner``): once the job is no longer
this runner's (requeued, claimed again, finished elsewhere), a write raises ``NotOwner`` and nothing is written;
the runner then stops without touching the job, its run or its feature set again."""
from __future__ import annotations

import threading
import time

from storage import Database, queue
from storage.owners import Owner

REPORT_EVERY_S = 0.5


class JobContext:
    """What a job handler sees: progress reporting, logging, the cancel flag and the claim (``owner``)."""

    def __init__(self, db: Database, job: queue.Job, owner: Owner | None = None):
        self.db, self.job = db, job
        self.owner = owner if owner is not None else (Owner(job.id, job.claim_token) if job.claim_token else None)
        self._last_report = 0.0
        self._cancel = False
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def progress(self, fraction: float, step: str | None = None, *, force: bool = False,
                 result_update: dict | None = None) -> None:
        """Throttled: at most one write every REPORT_EVERY_S unless ``force`` (ETA from elapsed time)."""
        now = time.monotonic()
        if not force and now - self._last_report < REPORT_EVERY_S and result_update is None:
            return
        fraction = max(0.0, min(1.0, float(fraction)))
        elapsed = now - self._started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.01 else None
        with self._lock:
            self._cancel = queue.report(self.db, self.job.id, progress=fraction, step=step, eta_seconds=eta,
                                        result_update=result_update, owner=self.owner) or self._cancel
            self._last_report = now

    def log(self, line: str) -> None:
        with self._lock:
            self._cancel = queue.report(self.db, self.job.id, log=f"[{time.strftime('%H:%M:%S')}] {line}",
                                        owner=self.owner) or self._cancel

    def should_stop(self) -> bool:
        return self._cancel

    def heartbeat(self) -> None:
        with self._lock:
            self._cancel = queue.report(self.db, self.job.id, owner=self.owner) or self._cancel
