"""The job worker: ``python -m jobs.worker [--db FILE] [--concurrency 1] [--once]``.

Polls the queue, claims jobs and runs each in its own ``jobs.runner`` process, at most ``concurrency`` at
a time (default 1 on a 2-core machine; ``DFF_WORKERS`` overrides). On start and every few seconds it marks
jobs whose process died as interrupted. The dashboard starts one worker in the background
(``ensure_worker``); a pid file keeps it to one per database.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from jobs import queue
from storage import Database

POLL_S = 0.5
ROOT = Path(__file__).resolve().parent.parent


def _pid_file(db: Database) -> Path:
    return db.path.with_name(db.path.name + ".worker.pid")


def run_worker(db: Database, concurrency: int = 1, once: bool = False, idle_exit_s: float | None = None) -> None:
    """Claim and run jobs until stopped (``once``: until the queue is empty and nothing runs)."""
    children: dict[int, subprocess.Popen] = {}
    queue.mark_stale(db)
    last_stale_check = time.monotonic()
    idle_since = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see dff_core/__main__.py: spinning threads on shared CPUs
    while True:
        for job_id, proc in list(children.items()):
            if proc.poll() is not None:
                del children[job_id]
                job = queue.get_job(db, job_id)
                if job.status == "running":  # the runner died before recording an outcome
                    queue.finish(db, job_id, "failed",
                                 error=f"the job process exited with status {proc.returncode} (out of memory?)")
        while len(children) < concurrency:
            job = queue.claim_next(db, os.getpid())
            if job is None:
                break
            children[job.id] = subprocess.Popen(
                [sys.executable, "-m", "jobs.runner", str(job.id), "--db", str(db.path)], cwd=str(ROOT), env=env)
        if children:
            idle_since = time.monotonic()
        elif once:
            return
        elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
            return
        if time.monotonic() - last_stale_check > 10:
            queue.mark_stale(db)
            last_stale_check = time.monotonic()
        time.sleep(POLL_S)


def ensure_worker(db: Database, concurrency: int | None = None) -> int:
    """Start a background worker for ``db`` unless one is alive; returns its pid."""
    pid_file = _pid_file(db)
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text().strip())
            if queue._pid_alive(pid):
                return pid
        except ValueError:
            pass
    concurrency = concurrency or int(os.environ.get("DFF_WORKERS", "1"))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(db.path.with_name(db.path.name + ".worker.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "jobs.worker", "--db", str(db.path), "--concurrency",
                             str(concurrency)], cwd=str(ROOT), env=env, stdout=log, stderr=log,
                            start_new_session=True)
    pid_file.write_text(str(proc.pid))
    return proc.pid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jobs.worker")
    ap.add_argument("--db", default=None)
    ap.add_argument("--concurrency", type=int, default=int(os.environ.get("DFF_WORKERS", "1")))
    ap.add_argument("--once", action="store_true", help="exit when the queue is empty")
    args = ap.parse_args(argv)
    db = Database(args.db)
    _pid_file(db).write_text(str(os.getpid()))
    try:
        run_worker(db, concurrency=max(1, args.concurrency), once=args.once)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
