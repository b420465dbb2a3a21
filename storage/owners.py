"""Who may write a job's rows, and whether a process is alive: the fence behind "one writer per job and run".

Contract:

* A process is named by its **identity** ``host:pid:start`` (``identity``): the start time (clock ticks since
  boot, from ``/proc/<pid>/stat``) tells a live process from a later one that reuses its pid.
* ``alive(identity)`` is ``True`` or ``False`` for a process on this host, and ``None`` for one on another host
  (the caller then judges by the heartbeat). A live process on this host is never reported dead, however long
  it has been silent: that is what keeps a job whose heartbeats were held up (a page run holding the database)
  from being declared interrupted.
* A job that a worker claims gets a fresh **claim token**. Every write a runner makes for the job — progress,
  the outcome, its run's epochs and result, its feature set's vectors — passes an ``Owner(job_id, token)`` and
  happens only while the job is ``running`` under that token (``check``, inside the writing transaction). DuckDB
  lets one process at a time open the file, so the check and the write are one step for every other process.
  A runner whose job was taken from it gets ``NotOwner`` and stops without writing.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:  # the type only: storage.db imports nothing from here, nor this from it at run time
    from storage.db import Database


class NotOwner(RuntimeError):
    """This process no longer owns the job it writes for (it was requeued, cancelled or finished elsewhere)."""


@dataclass(frozen=True)
class Owner:
    """The job a runner writes for and the claim token it was given (``storage.queue.claim_next``)."""
    job_id: int
    token: str


@lru_cache(maxsize=1)
def host() -> str:
    """This machine's name, as written into identities."""
    return socket.gethostname()


def _stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` fields after the command name (state first), or None when unreadable."""
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError, ValueError):
        return None


def _start_ticks(pid: int) -> str:
    fields = _stat(pid)
    return fields[19] if fields and len(fields) > 19 else "?"  # field 22 of the whole line: starttime


def identity(pid: int | None = None) -> str:
    """``host:pid:start`` of ``pid`` (this process by default)."""
    pid = os.getpid() if pid is None else int(pid)
    return f"{host()}:{pid}:{_start_ticks(pid)}"


def pid_alive(pid: int | None) -> bool:
    """True while ``pid`` runs on this host (a zombie — killed, not yet reaped — is not running)."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(int(pid))
    return fields is None or fields[0] != "Z"


def alive(ident: str | None) -> bool | None:
    """Is the process ``ident`` names running? None when it ran on another host (this one cannot tell)."""
    if not ident:
        return False
    try:
        where, pid_text, start = ident.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if where != host():
        return None
    if not pid_alive(pid):
        return False
    return start == "?" or _start_ticks(pid) in ("?", start)


def check(conn: sa.Connection, owner: Owner | None) -> None:
    """Inside a writing transaction: raise ``NotOwner`` unless ``owner`` still holds its running job.
    ``None`` (a foreground CLI run, no job) always passes."""
    if owner is None:
        return
    # every row fetched (at most one): DuckDB refuses other work on a connection with an unfinished result, and
    # the caller's next step may be a bulk insert on the same raw connection (storage.features.write_vectors)
    rows = conn.execute(sa.text("SELECT status, claim_token FROM jobs WHERE id = :i"), {"i": owner.job_id}).all()
    row = rows[0] if rows else None
    if row is None or row.status != "running" or row.claim_token != owner.token:
        state = "gone" if row is None else row.status if row.status != "running" else "claimed by another runner"
        raise NotOwner(f"job {owner.job_id} is no longer this runner's ({state}); stopping without writing")


def still_owns(db: "Database", owner: Owner | None) -> bool:
    """Whether ``owner`` still holds its running job (``None``: no job, always). For writes outside the
    database — a run's checkpoint file — that must follow the same fence as the rows (``check``)."""
    if owner is None:
        return True
    with db.session() as conn:
        try:
            check(conn, owner)
        except NotOwner:
            return False
    return True
