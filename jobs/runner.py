"""Run one claimed job in THIS process: ``python -m jobs.runner JOB_ID [--db FILE]``.

The worker starts one runner process per job, so a crash or out-of-memory in a job never takes the
dashboard or the worker down. The runner heartbeats from a background thread, throttles progress writes,
turns a cancel request into a graceful stop, and records the outcome.

One writer per job (``storage.owners``): the runner first takes the job over under the claim token its
worker got (``--token``) and then writes only under it. A runner that finds the job no longer its own — at
take-over, at a report in the job's own thread, or at a heartbeat — stops at once without writing anything
more: not the job, not the run's epochs, not a checkpoint (the heartbeat thread ends the process outright,
since a graceful stop would save one).
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import traceback

from jobs.context import REPORT_EVERY_S, JobContext  # noqa: F401  (REPORT_EVERY_S: read by tests)
from jobs.handlers import HANDLERS
from storage import Database, queue
from storage.owners import NotOwner, Owner

HEARTBEAT_S = 5.0
LOST_EXIT = 3  # the exit status of a runner that found its job taken from it


def _die_with_parent() -> None:
    """Linux: if the worker that started us is killed, we are killed too (no orphan keeps a job 'running')."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_job(db: Database, job: queue.Job, owner: Owner | None = None) -> str:
    """Run ``job``'s handler and record its outcome under ``owner``; ``"lost"`` (and nothing recorded) when the
    job stopped being this runner's on the way."""
    ctx = JobContext(db, job, owner)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                ctx.heartbeat()
            except NotOwner:
                os._exit(LOST_EXIT)  # no graceful stop: that would write a checkpoint the new owner reads
            except Exception:  # a missed heartbeat is not fatal; the next one retries
                pass

    threading.Thread(target=beat, daemon=True).start()
    try:
        ctx.log(f"started {job.kind} job {job.id}")
        handler = HANDLERS[job.kind]
        handler(db, job, ctx)
        status = "cancelled" if ctx.should_stop() else "done"
        stop.set()
        queue.finish(db, job.id, status, owner=ctx.owner)
        return status
    except NotOwner:
        stop.set()
        return "lost"
    except Exception as exc:  # a job's failure is recorded, never raised into the worker
        stop.set()
        from jobs.errors import user_message
        try:
            ctx.log(traceback.format_exc(limit=8))
            queue.finish(db, job.id, "failed", error=user_message(exc), owner=ctx.owner)
        except NotOwner:
            return "lost"
        return "failed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jobs.runner")
    ap.add_argument("job_id", type=int)
    ap.add_argument("--db", default=None)
    ap.add_argument("--token", default=None, help="the claim token the worker got for this job")
    args = ap.parse_args(argv)
    _die_with_parent()
    db = Database(args.db)
    token = args.token or queue.get_job(db, args.job_id, fresh=False).claim_token
    job = queue.take_over(db, args.job_id, token) if token else None
    if job is None:
        print(f"job {args.job_id} is no longer this runner's to run; nothing written", file=sys.stderr)
        return LOST_EXIT
    status = run_job(db, job, Owner(job.id, token))
    return 0 if status in ("done", "cancelled") else LOST_EXIT if status == "lost" else 1


if __name__ == "__main__":
    sys.exit(main())
