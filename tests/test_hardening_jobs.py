"""Dead workers are noticed wherever jobs are read; the dashboard's worker stops with the dashboard."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import sqlalchemy as sa

from data_helpers import ROOT, write_generic
import cli
from jobs.datasets import import_generic
from storage import queue
from storage.runs import create_run, get_run

ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def _orphan(db, heartbeat_age_s: float, pid: int | None = None, owner: str | None = None):
    """A job a worker claimed and a run it started, whose heartbeat is ``heartbeat_age_s`` old (``owner``:
    the owner identity written over the claim's, e.g. a process on another host)."""
    ds = import_generic(db, "d", *write_generic(db.path.parent / "d"))
    job_id = queue.enqueue(db, "train", {"dataset": "d", "strategy": "id"})
    queue.claim_next(db, pid or os.getpid())
    run = create_run(db, ds.id, "id", {}, job_id=job_id)
    with db.session() as conn:
        conn.execute(sa.text(f"UPDATE jobs SET heartbeat = current_timestamp - INTERVAL {int(heartbeat_age_s)} SECOND, "
                             "owner = coalesce(:o, owner) WHERE id = :i"), {"i": job_id, "o": owner})
    return job_id, run.id


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                            # a pid that no longer runs
    return dead.pid


def _cli(db, capsys, *args):
    code = cli.main(["--db", str(db.path), *args])
    return code, capsys.readouterr().out


def test_a_live_owner_stays_running_whatever_its_heartbeat_age(db, capsys):
    # the owner (this process) is alive, but its heartbeats could not reach the file for 10 minutes (a page run
    # held the database): the job is not dead, and no reader may say so
    job_id, run_id = _orphan(db, heartbeat_age_s=600)
    code, out = _cli(db, capsys, "jobs")
    assert code == 0 and f"{job_id:>5} train    running" in out
    assert queue.mark_stale(db) == []
    assert get_run(db, run_id).status == "running"
    code, out = _cli(db, capsys, "resume", str(job_id))  # and nobody starts a second runner on its run
    assert code == 2 and queue.get_job(db, job_id).status == "running"


def test_stale_heartbeat_of_an_owner_on_another_host_reads_as_interrupted(db, capsys):
    job_id, run_id = _orphan(db, heartbeat_age_s=600, owner="another-host:4242:123")
    code, out = _cli(db, capsys, "jobs")
    assert code == 0 and f"{job_id:>5} train    interrupted" in out
    assert get_run(db, run_id).status == "interrupted"   # job and run agree
    assert queue.get_job(db, job_id).error.startswith("the worker stopped unexpectedly")


def test_a_dead_owner_reads_as_interrupted_at_once(db, capsys):
    job_id, run_id = _orphan(db, heartbeat_age_s=0, pid=_dead_pid())
    assert [j.status for j in queue.list_jobs(db)] == ["interrupted"]
    assert get_run(db, run_id).status == "interrupted"


def test_fresh_heartbeat_stays_running(db, capsys):
    job_id, run_id = _orphan(db, heartbeat_age_s=1)
    assert [j.status for j in queue.list_jobs(db)] == ["running"]
    assert get_run(db, run_id).status == "running"


def test_resume_of_an_orphaned_job_works_at_once(db, capsys):
    job_id, run_id = _orphan(db, heartbeat_age_s=600, pid=_dead_pid())
    code, out = _cli(db, capsys, "resume", str(job_id))   # no worker ever looked at it
    assert code == 0 and "queued to resume" in out
    assert queue.get_job(db, job_id).status == "queued"


def test_cancel_of_an_orphaned_job_takes_effect(db, capsys):
    job_id, run_id = _orphan(db, heartbeat_age_s=2, pid=_dead_pid())
    code, out = _cli(db, capsys, "cancel", str(job_id))
    assert code == 0 and "cancelled (its worker had stopped)" in out
    assert queue.get_job(db, job_id).status == "cancelled"
    assert get_run(db, run_id).status == "cancelled"


def test_kill_9_worker_shows_interrupted_at_once_in_the_cli(db, tmp_path):
    import_generic(db, "d", *write_generic(tmp_path / "d", n_users=600, n_items=80, seq=10))
    settings = {"epochs": 200, "patience": 0, "hidden": 16, "batch_size": 64, "max_len": 20, "num_threads": 1}
    job_id = queue.enqueue(db, "train", {"dataset": "d", "strategy": "id", "seed": 1, "settings": settings})
    worker = subprocess.Popen([sys.executable, "-m", "jobs.worker", "--db", str(db.path)], cwd=ROOT, env=ENV,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not (queue.get_job(db, job_id).result or {}).get("run_id"):
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.3)
    run_id = queue.get_job(db, job_id).result["run_id"]
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    time.sleep(1.0)  # the job process notices its parent is gone and exits
    res = subprocess.run([sys.executable, "-m", "dff_core", "--db", str(db.path), "jobs"], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert f"{job_id:>5} train    interrupted" in res.stdout, res.stdout + res.stderr
    assert get_run(db, run_id).status == "interrupted"
    res = subprocess.run([sys.executable, "-m", "dff_core", "--db", str(db.path), "cancel", str(job_id)], cwd=ROOT,
                         env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "cancelled" in res.stdout
    assert queue.get_job(db, job_id).status == "cancelled"


# ------------------------------------------------------------------------------------------ worker lifetime

def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not queue._pid_alive(pid):
            return True
        time.sleep(0.2)
    return False


def test_worker_started_by_the_app_stops_with_it(db):
    app = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom jobs.worker import ensure_worker\nfrom storage import Database\n"
         f"print(ensure_worker(Database({str(db.path)!r})), flush=True)\ntime.sleep(600)\n"],
        cwd=ROOT, env=dict(ENV, DFF_APP_GONE_GRACE_S="1"), stdout=subprocess.PIPE, text=True)
    worker_pid = int(app.stdout.readline())
    try:
        time.sleep(2.0)
        assert queue._pid_alive(worker_pid), "the worker should run while the app does"
        app.send_signal(signal.SIGTERM)
        app.wait(timeout=10)
        assert _wait_gone(worker_pid, timeout=30), "the app's worker outlived the app"
        assert not db.path.with_name(db.path.name + ".worker.pid").exists()
    finally:
        if queue._pid_alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)
        app.kill()


def test_worker_started_on_its_own_keeps_running(db):
    # started from a shell that exits at once: the worker is re-parented, as when run with nohup or from a terminal
    out = subprocess.run(["sh", "-c", f"{sys.executable} -m jobs.worker --db {db.path} >/dev/null 2>&1 & echo $!"],
                         cwd=ROOT, env=dict(ENV, DFF_APP_GONE_GRACE_S="1"), capture_output=True, text=True, timeout=30)
    worker_pid = int(out.stdout.strip())
    try:
        time.sleep(6.0)
        assert queue._pid_alive(worker_pid), "a worker started on its own must keep running"
    finally:
        os.kill(worker_pid, signal.SIGKILL)
