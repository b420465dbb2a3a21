"""The job table: the queue the workers (``jobs.worker``) claim from.

Claiming is one UPDATE ... RETURNING inside a transaction; DuckDB's single-writer file lock makes it atomic
across processes, so two workers never run the same job. A running job proves it is alive with a heartbeat;
a running job whose heartbeat is stale and whose worker process is gone is marked ``interrupted`` and can be
resumed (extraction skips stored items, training continues from its last checkpoint).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import sqlalchemy as sa

from storage.db import Database, NotFound, retry_on_conflict

KINDS = ("extract", "train", "sweep", "demo")
ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled", "interrupted")
LOG_TAIL_CHARS = 8000
# a running job's runner heartbeats every 5 s; one silent this long (or whose process is gone) is interrupted
STALE_AFTER_S = float(os.environ.get("DFF_STALE_AFTER_S", "30"))


@dataclass
class Job:
    id: int
    kind: str
    params: dict
    status: str
    progress: float
    step: str | None
    eta_seconds: float | None
    log: str
    error: str | None
    result: dict | None
    group_name: str | None
    parent_id: int | None
    worker_pid: int | None
    cancel_requested: bool
    heartbeat: object
    created_at: object
    started_at: object
    finished_at: object

    def to_dict(self) -> dict:
        return {k: (str(v) if k in ("heartbeat", "created_at", "started_at", "finished_at") and v is not None else v)
                for k, v in self.__dict__.items()}


def _job(row) -> Job:
    return Job(id=row.id, kind=row.kind, params=json.loads(row.params), status=row.status, progress=row.progress,
               step=row.step, eta_seconds=row.eta_seconds, log=row.log, error=row.error,
               result=json.loads(row.result) if row.result else None, group_name=row.group_name,
               parent_id=row.parent_id, worker_pid=row.worker_pid, cancel_requested=bool(row.cancel_requested),
               heartbeat=row.heartbeat, created_at=row.created_at, started_at=row.started_at,
               finished_at=row.finished_at)


def enqueue(db: Database, kind: str, params: dict, *, group: str | None = None, parent_id: int | None = None) -> int:
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; one of {', '.join(KINDS)}")
    with db.session() as conn:
        return conn.execute(sa.text(
            "INSERT INTO jobs (kind, params, status, group_name, parent_id) VALUES (:k, :p, 'queued', :g, :pa) "
            "RETURNING id"), {"k": kind, "p": json.dumps(params), "g": group, "pa": parent_id}).scalar_one()


def get_job(db: Database, job_id: int, fresh: bool = True) -> Job:
    """One job; ``fresh`` first marks dead workers' jobs interrupted, so a reader never shows a dead job running."""
    if fresh:
        mark_stale(db)
    with db.session() as conn:
        row = conn.execute(sa.text("SELECT * FROM jobs WHERE id = :i"), {"i": int(job_id)}).first()
    if row is None:
        raise NotFound(f"no job with id {job_id}")
    return _job(row)


def list_jobs(db: Database, status: str | None = None, group: str | None = None, limit: int | None = None,
              fresh: bool = True) -> list[Job]:
    """Jobs, newest first; ``fresh``: staleness judged first (``mark_stale``), as everywhere jobs are read."""
    if fresh:
        mark_stale(db)
    query, args = "SELECT * FROM jobs WHERE 1=1", {}
    if status:
        query, args["s"] = query + " AND status = :s", status
    if group:
        query, args["g"] = query + " AND group_name = :g", group
    query += " ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
    with db.session() as conn:
        return [_job(r) for r in conn.execute(sa.text(query), args).fetchall()]


def claim_next(db: Database, worker_pid: int, kinds: tuple[str, ...] = KINDS) -> Job | None:
    """Atomically move the oldest queued job to running and return it (None when the queue is empty)."""
    kind_list = ", ".join(f"'{k}'" for k in kinds)
    with db.session() as conn:
        row = conn.execute(sa.text(
            "UPDATE jobs SET status = 'running', worker_pid = :pid, heartbeat = current_timestamp, "
            "started_at = coalesce(started_at, current_timestamp), cancel_requested = false, error = NULL "
            f"WHERE id = (SELECT min(id) FROM jobs WHERE status = 'queued' AND kind IN ({kind_list})) "
            "RETURNING *"), {"pid": worker_pid}).first()
    return _job(row) if row is not None else None


@retry_on_conflict
def report(db: Database, job_id: int, *, progress: float | None = None, step: str | None = None,
           eta_seconds: float | None = None, log: str | None = None, result_update: dict | None = None) -> bool:
    """Record progress (and refresh the heartbeat). Returns True when a cancel was requested."""
    with db.session() as conn:
        row = conn.execute(sa.text("SELECT log, result, cancel_requested FROM jobs WHERE id = :i"),
                           {"i": job_id}).first()
        if row is None:
            raise NotFound(f"no job with id {job_id}")
        new_log = row.log
        if log:
            new_log = (row.log + log.rstrip("\n") + "\n")[-LOG_TAIL_CHARS:]
        result = json.loads(row.result) if row.result else {}
        if result_update:
            result.update(result_update)
        conn.execute(sa.text(
            "UPDATE jobs SET progress = coalesce(:p, progress), step = coalesce(:s, step), eta_seconds = :e, "
            "log = :l, result = :r, heartbeat = current_timestamp WHERE id = :i"),
            {"p": progress, "s": step, "e": eta_seconds, "l": new_log, "r": json.dumps(result) if result else None,
             "i": job_id})
    return bool(row.cancel_requested)


@retry_on_conflict
def finish(db: Database, job_id: int, status: str, *, error: str | None = None, result_update: dict | None = None) -> None:
    if status not in FINAL:
        raise ValueError(f"a job finishes as one of {FINAL}, not {status!r}")
    with db.session() as conn:
        row = conn.execute(sa.text("SELECT result FROM jobs WHERE id = :i"), {"i": job_id}).first()
        result = json.loads(row.result) if row and row.result else {}
        result.update(result_update or {})
        conn.execute(sa.text(
            "UPDATE jobs SET status = :s, error = :e, result = :r, finished_at = current_timestamp, "
            "progress = CASE WHEN :s = 'done' THEN 1.0 ELSE progress END, eta_seconds = NULL WHERE id = :i"),
            {"s": status, "e": error, "r": json.dumps(result) if result else None, "i": job_id})


def request_cancel(db: Database, job_id: int) -> str:
    """Queued jobs are cancelled at once; running ones stop gracefully at their next progress report; a job
    whose worker died (interrupted, or running with a stale heartbeat) is cancelled at once, with its run."""
    job = get_job(db, job_id)  # fresh: an orphaned "running" job reads as interrupted here
    with db.session() as conn:
        if job.status == "queued":
            conn.execute(sa.text("UPDATE jobs SET status = 'cancelled', finished_at = current_timestamp "
                                 "WHERE id = :i AND status = 'queued'"), {"i": job_id})
            return "cancelled"
        if job.status == "interrupted":
            conn.execute(sa.text("UPDATE jobs SET status = 'cancelled', cancel_requested = false, "
                                 "finished_at = current_timestamp WHERE id = :i AND status = 'interrupted'"),
                         {"i": job_id})
            conn.execute(sa.text("UPDATE runs SET status = 'cancelled' WHERE job_id = :i "
                                 "AND status IN ('running', 'interrupted')"), {"i": job_id})
            return "cancelled (its worker had stopped)"
        if job.status == "running":
            conn.execute(sa.text("UPDATE jobs SET cancel_requested = true WHERE id = :i"), {"i": job_id})
            return "cancel requested"
    raise ValueError(f"job {job_id} is {job.status}; only queued or running jobs can be cancelled")


def requeue(db: Database, job_id: int, allowed: tuple[str, ...]) -> None:
    job = get_job(db, job_id)  # fresh: a job whose worker died can be resumed at once
    if job.status not in allowed:
        raise ValueError(f"job {job_id} is {job.status}; this needs a job that is {' or '.join(allowed)}")
    with db.session() as conn:
        conn.execute(sa.text("UPDATE jobs SET status = 'queued', cancel_requested = false, finished_at = NULL, "
                             "worker_pid = NULL WHERE id = :i"), {"i": job_id})


def retry(db: Database, job_id: int) -> None:
    """Run a failed or cancelled job again (it picks up what was already stored)."""
    requeue(db, job_id, ("failed", "cancelled", "interrupted"))


def resume(db: Database, job_id: int) -> None:
    """Continue an interrupted (or cancelled) job from where it stopped."""
    requeue(db, job_id, ("interrupted", "cancelled", "failed"))


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed child not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def mark_stale(db: Database, stale_after_s: float | None = None) -> list[int]:
    """Running jobs whose worker died (pid gone, or no heartbeat for ``stale_after_s``) become interrupted,
    and so do their runs (``runs.job_id``), keeping job and run status consistent. Cheap when nothing is
    stale (one read); every reader of jobs calls it."""
    stale_after_s = STALE_AFTER_S if stale_after_s is None else stale_after_s
    with db.session() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, worker_pid, epoch(current_timestamp) - epoch(heartbeat) AS age FROM jobs "
            "WHERE status = 'running'")).fetchall()
    stale = [r.id for r in rows if not _pid_alive(r.worker_pid) or (r.age is not None and r.age > stale_after_s)]
    if stale:
        with db.session() as conn:
            conn.execute(sa.text(
                "UPDATE jobs SET status = 'interrupted', error = 'the worker stopped unexpectedly (killed or crashed); "
                "resume to continue', finished_at = current_timestamp WHERE status = 'running' AND id IN :ids")
                .bindparams(sa.bindparam("ids", expanding=True)), {"ids": stale})
            conn.execute(sa.text("UPDATE runs SET status = 'interrupted' WHERE status = 'running' AND job_id IN :ids")
                         .bindparams(sa.bindparam("ids", expanding=True)), {"ids": stale})
    return stale
