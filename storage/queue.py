"""The job table: the queue the workers (``jobs.worker``) claim from.

Claiming is one UPDATE ... RETURNING inside a transaction; DuckDB's single-writer file lock makes it atomic
across processes, so two workers never run the same job. A claim hands out a fresh token, and every later
write for the job (``report``, ``finish``, its run's and feature set's rows) is fenced by it
(``storage.owners``): one writer per job and run.

A running job is judged by its owner process (``owners.alive``): on this host, a live owner keeps the job
running whatever its heartbeat age, and a dead one makes it ``interrupted`` at once; only an owner on another
host is judged by its heartbeat. When a job ends in any way its run and feature set end with it, in the same
transaction (``_cascade``), so no run or feature set says ``running`` without a process behind it.
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from storage import owners
from storage.db import Database, NotFound, retry_on_conflict
from storage.owners import NotOwner, Owner

KINDS = ("extract", "train", "sweep", "demo")
ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled", "interrupted")
LOG_TAIL_CHARS = 8000
# a running job's runner heartbeats every 5 s; an owner on another host silent this long is interrupted
# (on this host the owner's process decides: alive = running, gone = interrupted)
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
    claim_token: str | None = None
    owner: str | None = None

    def to_dict(self) -> dict:
        return {k: (str(v) if k in ("heartbeat", "created_at", "started_at", "finished_at") and v is not None else v)
                for k, v in self.__dict__.items()}


def _job(row) -> Job:
    return Job(id=row.id, kind=row.kind, params=json.loads(row.params), status=row.status, progress=row.progress,
               step=row.step, eta_seconds=row.eta_seconds, log=row.log, error=row.error,
               result=json.loads(row.result) if row.result else None, group_name=row.group_name,
               parent_id=row.parent_id, worker_pid=row.worker_pid, cancel_requested=bool(row.cancel_requested),
               heartbeat=row.heartbeat, created_at=row.created_at, started_at=row.started_at,
               finished_at=row.finished_at, claim_token=getattr(row, "claim_token", None),
               owner=getattr(row, "owner", None))


def enqueue(db: Database, kind: str, params: dict, *, group: str | None = None, parent_id: int | None = None) -> int:
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; one of {', '.join(KINDS)}")
    with db.session() as conn:
        return conn.execute(sa.text(
            "INSERT INTO jobs (kind, params, status, group_name, parent_id) VALUES (:k, :p, 'queued', :g, :pa) "
            "RETURNING id"), {"k": kind, "p": json.dumps(params), "g": group, "pa": parent_id}).scalar_one()


def enqueue_many(db: Database, kind: str, params_list: list[dict], *, group: str | None = None,
                 parent_id: int | None = None) -> list[int]:
    """Queue many jobs in one transaction (a sweep's runs): one open of the file, not one per job, so a big
    sweep never keeps other processes out for long. Returns the ids in order."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; one of {', '.join(KINDS)}")
    with db.session() as conn:
        return [conn.execute(sa.text(
            "INSERT INTO jobs (kind, params, status, group_name, parent_id) VALUES (:k, :p, 'queued', :g, :pa) "
            "RETURNING id"), {"k": kind, "p": json.dumps(p), "g": group, "pa": parent_id}).scalar_one()
            for p in params_list]


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
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"--limit must be a whole number of at least 1, not {limit!r}")
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


def claim_next(db: Database, worker_pid: int, kinds: tuple[str, ...] = KINDS, head_only: bool = False) -> Job | None:
    """Atomically move the oldest queued job to running under a fresh claim token, owned by ``worker_pid``
    until its runner takes over (``take_over``), and return it (None when the queue is empty).

    ``head_only``: claim it only when the oldest queued job of any kind is one of ``kinds`` (None otherwise), so a
    worker filling a side-by-side slot never starts a training run ahead of the extraction queued before it."""
    kind_list = ", ".join(f"'{k}'" for k in kinds)
    pick = ("(SELECT min(id) FROM jobs WHERE status = 'queued') AND kind IN ({})" if head_only else
            "(SELECT min(id) FROM jobs WHERE status = 'queued' AND kind IN ({}))").format(kind_list)
    with db.session() as conn:
        row = conn.execute(sa.text(
            "UPDATE jobs SET status = 'running', worker_pid = :pid, owner = :o, claim_token = :t, "
            "heartbeat = current_timestamp, started_at = coalesce(started_at, current_timestamp), "
            "cancel_requested = false, error = NULL "
            f"WHERE id = {pick} "
            "RETURNING *"), {"pid": worker_pid, "o": owners.identity(worker_pid), "t": uuid.uuid4().hex}).first()
    return _job(row) if row is not None else None


def next_queued(db: Database) -> Job | None:
    """The job a worker would claim next (the oldest queued one), or None: read only."""
    with db.session() as conn:
        row = conn.execute(sa.text("SELECT * FROM jobs WHERE id = (SELECT min(id) FROM jobs WHERE status = 'queued')")
                           ).first()
    return _job(row) if row is not None else None


def take_over(db: Database, job_id: int, token: str, pid: int | None = None) -> Job | None:
    """The runner process becomes the owner of the job its worker claimed under ``token``; None (and nothing
    written) when the claim is no longer valid — the job was cancelled, requeued or claimed again meanwhile."""
    pid = os.getpid() if pid is None else pid
    with db.session() as conn:
        row = conn.execute(sa.text(
            "UPDATE jobs SET worker_pid = :p, owner = :o, heartbeat = current_timestamp "
            "WHERE id = :i AND claim_token = :t AND status = 'running' RETURNING *"),
            {"p": pid, "o": owners.identity(pid), "i": int(job_id), "t": token}).first()
    return _job(row) if row is not None else None


@retry_on_conflict
def report(db: Database, job_id: int, *, progress: float | None = None, step: str | None = None,
           eta_seconds: float | None = None, log: str | None = None, result_update: dict | None = None,
           owner: Owner | None = None) -> bool:
    """Record progress (and refresh the heartbeat). Returns True when a cancel was requested.
    With ``owner``: only while that claim holds the running job, else ``NotOwner`` and nothing written."""
    with db.session() as conn:
        owners.check(conn, owner)
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


# how a job's end reads on its run and on its feature set (a job that ends done leaves them to its handler)
RUN_STATUS = {"failed": "failed", "cancelled": "cancelled", "interrupted": "interrupted"}


def _cascade(conn: sa.Connection, job_ids: list[int], status: str, error: str | None = None) -> None:
    """The runs and feature sets of ``job_ids`` still marked running end as the job did, in the caller's
    transaction: a job that failed, was killed, interrupted or cancelled never leaves a run or a feature set
    reading ``running`` (training would refuse such a feature set for good)."""
    if status not in RUN_STATUS or not job_ids:
        return
    ids = sa.bindparam("ids", expanding=True)
    conn.execute(sa.text("UPDATE runs SET status = :s, error = coalesce(error, :e), "
                         "finished_at = coalesce(finished_at, current_timestamp) "
                         "WHERE status = 'running' AND job_id IN :ids").bindparams(ids),
                 {"s": RUN_STATUS[status], "e": error, "ids": list(job_ids)})
    conn.execute(sa.text("UPDATE feature_sets SET status = :s WHERE status = 'running' AND job_id IN :ids")
                 .bindparams(ids), {"s": RUN_STATUS[status], "ids": list(job_ids)})


@retry_on_conflict
def finish(db: Database, job_id: int, status: str, *, error: str | None = None, result_update: dict | None = None,
           owner: Owner | None = None) -> None:
    """Record how a job ended, and end its run and feature set alike (``_cascade``). With ``owner``: only while
    that claim holds the running job (else ``NotOwner``); the owner then lets go of the job."""
    if status not in FINAL:
        raise ValueError(f"a job finishes as one of {FINAL}, not {status!r}")
    with db.session() as conn:
        owners.check(conn, owner)
        row = conn.execute(sa.text("SELECT result FROM jobs WHERE id = :i"), {"i": job_id}).first()
        result = json.loads(row.result) if row and row.result else {}
        result.update(result_update or {})
        conn.execute(sa.text(
            "UPDATE jobs SET status = :s, error = :e, result = :r, finished_at = current_timestamp, "
            "owner = CASE WHEN :released THEN NULL ELSE owner END, "
            "progress = CASE WHEN :s = 'done' THEN 1.0 ELSE progress END, eta_seconds = NULL WHERE id = :i"),
            {"s": status, "e": error, "r": json.dumps(result) if result else None, "i": job_id,
             "released": owner is not None})
        _cascade(conn, [job_id], status, error)
    db.checkpoint()  # a finished job's results live in the main file, not only in the write-ahead log


def request_cancel(db: Database, job_id: int) -> str:
    """Queued jobs are cancelled at once; running ones stop gracefully at their next progress report; a job
    whose worker died (interrupted) is cancelled at once, with its run and feature set."""
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
            conn.execute(sa.text("UPDATE feature_sets SET status = 'cancelled' WHERE job_id = :i "
                                 "AND status IN ('running', 'interrupted')"), {"i": job_id})
            return "cancelled (its worker had stopped)"
        if job.status == "running":
            conn.execute(sa.text("UPDATE jobs SET cancel_requested = true WHERE id = :i"), {"i": job_id})
            return "cancel requested"
    raise ValueError(f"job {job_id} is {job.status}; only queued or running jobs can be cancelled")


def cancel_group(db: Database, group: str) -> dict[str, int]:
    """Cancel a whole study, sweep or group in one transaction, however many jobs it holds: queued and
    interrupted jobs are cancelled at once (with their runs and feature sets), running ones are asked to stop
    at their next report. Returns how many of each; ``NotFound`` when the group has nothing to cancel."""
    mark_stale(db)
    ids = sa.bindparam("ids", expanding=True)
    with db.session() as conn:
        queued = conn.execute(sa.text(
            "UPDATE jobs SET status = 'cancelled', finished_at = current_timestamp "
            "WHERE group_name = :g AND status = 'queued' RETURNING id"), {"g": group}).fetchall()
        stopped = [r[0] for r in conn.execute(sa.text(
            "UPDATE jobs SET status = 'cancelled', cancel_requested = false, finished_at = current_timestamp "
            "WHERE group_name = :g AND status = 'interrupted' RETURNING id"), {"g": group})]
        if stopped:
            for table in ("runs", "feature_sets"):
                conn.execute(sa.text(f"UPDATE {table} SET status = 'cancelled' WHERE job_id IN :ids "
                                     "AND status IN ('running', 'interrupted')").bindparams(ids), {"ids": stopped})
        running = conn.execute(sa.text(
            "UPDATE jobs SET cancel_requested = true WHERE group_name = :g AND status = 'running' RETURNING id"),
            {"g": group}).fetchall()
    counts = {"cancelled": len(queued) + len(stopped), "stopping": len(running)}
    if not any(counts.values()):
        raise NotFound(f"group {group!r} has no queued, running or interrupted job to cancel")
    return counts


def requeue(db: Database, job_id: int, allowed: tuple[str, ...]) -> None:
    """Queue a job again, dropping its claim. Refused while the job's owner process still runs on this host
    (a job marked interrupted by a reader on another host, or a runner still stopping): two runners on one
    run would write one checkpoint and one set of epochs."""
    job = get_job(db, job_id)  # fresh: a job whose worker died can be resumed at once
    if job.status not in allowed:
        raise ValueError(f"job {job_id} is {job.status}; this needs a job that is {' or '.join(allowed)}")
    if owners.alive(job.owner):
        raise ValueError(f"job {job_id}'s process (pid {job.owner.rsplit(':', 2)[1]}) is still running; "
                         "wait for it to stop, then try again")
    with db.session() as conn:
        done = conn.execute(sa.text(
            "UPDATE jobs SET status = 'queued', cancel_requested = false, finished_at = NULL, worker_pid = NULL, "
            "owner = NULL, claim_token = NULL WHERE id = :i AND status = :s RETURNING id"),
            {"i": job_id, "s": job.status}).first()
    if done is None:
        raise ValueError(f"job {job_id} changed state meanwhile; look again")


def retry(db: Database, job_id: int) -> None:
    """Run a failed or cancelled job again (it picks up what was already stored)."""
    requeue(db, job_id, ("failed", "cancelled", "interrupted"))


def resume(db: Database, job_id: int) -> None:
    """Continue an interrupted (or cancelled) job from where it stopped."""
    requeue(db, job_id, ("interrupted", "cancelled", "failed"))


def _pid_alive(pid: int | None) -> bool:
    """Kept for callers that hold a bare pid (the worker's pid file): ``owners.pid_alive``."""
    return owners.pid_alive(pid)


def _owner_gone(owner: str | None, worker_pid: int | None, age: float | None, stale_after_s: float) -> bool:
    """Is a running job's owner gone? Its process decides on this host (alive: never, whatever the heartbeat
    age); an owner on another host is gone once its heartbeat is older than ``stale_after_s``."""
    verdict = owners.alive(owner) if owner else (owners.pid_alive(worker_pid) if worker_pid else None)
    if verdict is None:
        return age is not None and age > stale_after_s
    return not verdict


@retry_on_conflict  # two sessions of one dashboard may mark the same stale job at once
def mark_stale(db: Database, stale_after_s: float | None = None) -> list[int]:
    """Running jobs whose owner is gone (``_owner_gone``) become interrupted, and so do their runs and
    feature sets (``_cascade``). Cheap when nothing is stale (one read); every reader of jobs calls it."""
    stale_after_s = STALE_AFTER_S if stale_after_s is None else stale_after_s
    with db.session() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, worker_pid, owner, epoch(current_timestamp) - epoch(heartbeat) AS age FROM jobs "
            "WHERE status = 'running'")).fetchall()
    stale = [r.id for r in rows if _owner_gone(r.owner, r.worker_pid, r.age, stale_after_s)]
    if stale:
        error = "the worker stopped unexpectedly (killed or crashed); resume to continue"
        with db.session() as conn:
            gone = [r[0] for r in conn.execute(sa.text(
                "UPDATE jobs SET status = 'interrupted', error = :e, finished_at = current_timestamp "
                "WHERE status = 'running' AND id IN :ids RETURNING id")
                .bindparams(sa.bindparam("ids", expanding=True)), {"ids": stale, "e": error})]
            _cascade(conn, gone, "interrupted")
    return stale
