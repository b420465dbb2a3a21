"""Run one claimed job in THIS process: ``python -m jobs.runner JOB_ID [--db FILE]``.

The worker starts one runner process per job, so a crash or out-of-memory in a job never takes the
dashboard or the worker down. The runner heartbeats from a background thread, throttles progress writes,
turns a cancel request into a graceful stop, and records the outcome.
"""
from __future__ import annotations

import argparse
import ctypes
import signal
import sys
import threading
import traceback

from jobs.context import REPORT_EVERY_S, JobContext  # noqa: F401  (REPORT_EVERY_S: read by tests)
from jobs.handlers import HANDLERS
from storage import Database, queue

HEARTBEAT_S = 5.0


def _die_with_parent() -> None:
    """Linux: if the worker that started us is killed, we are killed too (no orphan keeps a job 'running')."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_job(db: Database, job: queue.Job) -> str:
    ctx = JobContext(db, job)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                ctx.heartbeat()
            except Exception:  # a missed heartbeat is not fatal; the next one retries
                pass

    threading.Thread(target=beat, daemon=True).start()
    try:
        ctx.log(f"started {job.kind} job {job.id}")
        handler = HANDLERS[job.kind]
        handler(db, job, ctx)
        status = "cancelled" if ctx.should_stop() else "done"
        stop.set()
        queue.finish(db, job.id, status)
        return status
    except Exception as exc:  # a job's failure is recorded, never raised into the worker
        stop.set()
        from jobs.errors import user_message
        ctx.log(traceback.format_exc(limit=8))
        queue.finish(db, job.id, "failed", error=user_message(exc))
        return "failed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jobs.runner")
    ap.add_argument("job_id", type=int)
    ap.add_argument("--db", default=None)
    args = ap.parse_args(argv)
    _die_with_parent()
    db = Database(args.db)
    import os
    from sqlalchemy import text
    with db.session() as conn:
        conn.execute(text("UPDATE jobs SET worker_pid = :p, heartbeat = current_timestamp WHERE id = :i"),
                     {"p": os.getpid(), "i": args.job_id})
    status = run_job(db, queue.get_job(db, args.job_id, fresh=False))
    return 0 if status in ("done", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
