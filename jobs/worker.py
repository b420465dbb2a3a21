"""The job worker: ``python -m jobs.worker [--db FILE] [--concurrency 1] [--once]``.

Polls the queue, claims jobs and runs each in its own ``jobs.runner`` process, at most ``concurrency`` at
a time (default 1 on a 2-core machine; ``DFF_WORKERS`` overrides). On start and every few seconds it marks
jobs whose process died as interrupted. The dashboard starts one worker in the background
(``ensure_worker``); a pid file keeps it to one per database. That worker watches the dashboard's process
(``--parent-pid``): once the dashboard is gone it claims nothing new, lets a running job finish and exits
after ``APP_GONE_GRACE_S``. A worker started on its own (no ``--parent-pid``) runs until stopped.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from storage import queue
from storage import Database
from storage.owners import NotOwner, Owner

POLL_S = 0.5
ROOT = Path(__file__).resolve().parent.parent
# a worker the dashboard started (``--parent-pid``) exits this long after the dashboard is gone and nothing runs
APP_GONE_GRACE_S = float(os.environ.get("DFF_APP_GONE_GRACE_S", "5"))


def _pid_file(db: Database) -> Path:
    return db.path.with_name(db.path.name + ".worker.pid")


def _parent_alive(parent_pid: int | None) -> bool:
    """True while the process that started us is alive. A dead parent's children are re-parented (to init or
    a subreaper), so ``getppid`` changing is the signal — immune to the parent's pid being reused."""
    return parent_pid is None or os.getppid() == parent_pid


def run_worker(db: Database, concurrency: int = 1, once: bool = False, idle_exit_s: float | None = None,
               parent_pid: int | None = None) -> None:
    """Claim and run jobs until stopped (``once``: until the queue is empty and nothing runs; ``parent_pid``:
    until that process — the dashboard — is gone and the running jobs have finished)."""
    children: dict[int, tuple[subprocess.Popen, str]] = {}  # job id -> (runner, claim token)
    app_gone_since: float | None = None
    queue.mark_stale(db)
    last_stale_check = time.monotonic()
    idle_since = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see dff_core/__main__.py: spinning threads on shared CPUs
    while True:
        for job_id, (proc, token) in list(children.items()):
            if proc.poll() is not None:
                del children[job_id]
                _reap(db, job_id, token, proc.returncode)
        if app_gone_since is None and not _parent_alive(parent_pid):
            app_gone_since = time.monotonic()
        while app_gone_since is None and len(children) < concurrency:
            job = queue.claim_next(db, os.getpid())
            if job is None:
                break
            children[job.id] = (subprocess.Popen(
                [sys.executable, "-m", "jobs.runner", str(job.id), "--db", str(db.path), "--token", job.claim_token],
                cwd=str(ROOT), env=env), job.claim_token)
        if children:
            idle_since = time.monotonic()
        elif once:
            return
        elif app_gone_since is not None and time.monotonic() - app_gone_since > APP_GONE_GRACE_S:
            return  # the dashboard that started us is gone and nothing runs
        elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
            return
        if time.monotonic() - last_stale_check > 10:
            queue.mark_stale(db)
            last_stale_check = time.monotonic()
        time.sleep(POLL_S)


def _reap(db: Database, job_id: int, token: str, returncode: int) -> None:
    """A runner exited. If the job is still running under the claim this worker gave it, the runner died
    before recording an outcome (killed, out of memory): the job fails, and its run and feature set with it
    (``queue.finish`` cascades). A job that ended or moved on meanwhile is left alone."""
    try:
        queue.finish(db, job_id, "failed", owner=Owner(job_id, token),
                     error=f"the job process exited with status {returncode} (killed, or out of memory?)")
    except NotOwner:
        pass


def ensure_worker(db: Database, concurrency: int | None = None) -> int:
    """Start a background worker for ``db`` unless one is alive; returns its pid."""
    pid_file = _pid_file(db)
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text().strip())
            if queue._pid_alive(pid):  # a bare pid: the file names no start time
                return pid
        except ValueError:
            pass
    concurrency = concurrency or int(os.environ.get("DFF_WORKERS", "1"))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(db.path.with_name(db.path.name + ".worker.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "jobs.worker", "--db", str(db.path), "--concurrency",
                             str(concurrency), "--parent-pid", str(os.getpid())], cwd=str(ROOT), env=env,
                            stdout=log, stderr=log, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    return proc.pid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jobs.worker")
    ap.add_argument("--db", default=None)
    ap.add_argument("--concurrency", type=int, default=int(os.environ.get("DFF_WORKERS", "1")))
    ap.add_argument("--once", action="store_true", help="exit when the queue is empty")
    ap.add_argument("--parent-pid", type=int, default=None,
                    help="exit once this process (the dashboard that started the worker) is gone")
    args = ap.parse_args(argv)
    db = Database(args.db)
    pid_file = _pid_file(db)
    pid_file.write_text(str(os.getpid()))
    try:
        run_worker(db, concurrency=max(1, args.concurrency), once=args.once, parent_pid=args.parent_pid)
    except KeyboardInterrupt:
        pass
    finally:
        try:  # leave the pid file to a newer worker that took over
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
