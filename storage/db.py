"""One DuckDB file shared by the dashboard, job workers and the CLI.

DuckDB lets exactly one process hold a database file open for writing, and while it does no other
process can open the file at all (not even read-only). Long-lived connections would therefore lock
every other process out. The pattern used here, measured in ``bench/bench_storage.py`` and proven by
``tests/test_storage_concurrency.py``:

* every unit of work opens the file, runs one transaction and closes it again (``Database.session``);
* opening retries with jittered exponential backoff while another process holds the lock, up to a
  deadline (``DFF_DB_TIMEOUT``, 120 s by default), so a lock conflict shows up as a short wait, never as
  an error in front of a user;
* bulk data (feature tensors, interactions) moves as Arrow/numpy in one statement per batch, so no
  transaction holds the lock for long;
* a burst of sessions (one dashboard page run) may keep the file open between them (``Database.held_open``,
  at most ``HOLD_SECONDS``, ended by a timer when the burst runs longer): DuckDB shares one open database among a process's connections, so a session
  inside skips opening the file, its catalogue and its write-ahead log again.

SQLAlchemy Core describes the metadata tables (``storage.schema``); the DuckDB connection underneath is
used directly for Arrow bulk transfers.
"""
from __future__ import annotations

import functools
import os
import random
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import duckdb
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

DEFAULT_DB = Path("data") / "dff_studio.duckdb"
HOLD_SECONDS = 3.0  # longest a burst keeps the file open between its sessions (other processes wait meanwhile)
T = TypeVar("T")


class NotFound(LookupError):
    """A named thing (dataset, feature set, run, job) does not exist."""


CONFLICTS = ("Conflict on update", "Conflict on tuple deletion")  # DuckDB's words for a write-write conflict


def retry_on_conflict(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` (one whole transaction) again when DuckDB refuses it with "Conflict on update" (or "on tuple
    deletion"): two open transactions wrote the same row (a job's heartbeat thread and its driver reporting
    progress at once; two dashboard sessions marking the same stale job). The refused one was rolled back
    entirely, so running it again is safe; short jittered waits, then give up."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for attempt in range(20):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # sqlalchemy wraps duckdb.TransactionException
                if not any(c in str(exc) for c in CONFLICTS) or attempt == 19:
                    raise
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    return wrapper


class DatabaseBusy(RuntimeError):
    """The file stayed locked by another process for longer than the configured deadline."""


class DatabaseDamaged(RuntimeError):
    """The database file or its write-ahead log cannot be read (a bad header, a block whose checksum fails, a file
    cut short, a WAL that does not replay). Its message is one line for a person: the file, what is wrong, and
    what to do; nothing was changed by the command that met it."""


# how DuckDB words damage (IO and checksum errors), as opposed to a lock, a busy file or a bad query
DAMAGE_SIGNS = ("not a valid DuckDB database", "Corrupt", "checksum", "Could not read enough bytes",
                "replaying WAL", "Failure while replaying")


def damage(exc: BaseException, path: Path) -> DatabaseDamaged | None:
    """``exc`` as a :class:`DatabaseDamaged` naming ``path`` and the way out, or None when it is not damage."""
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
    if not any(sign in text for sign in DAMAGE_SIGNS):
        return None
    reason = text.split("Error: ", 1)[-1][:200]
    wal = Path(str(path) + ".wal")
    if "WAL" in text and wal.exists():
        return DatabaseDamaged(
            f"the database's write-ahead log {wal} is damaged ({reason}); nothing was changed. Move it aside "
            f"(mv '{wal}' '{wal}.damaged': the changes only it holds are lost) and try again, or restore a copy "
            f"of {path}")
    return DatabaseDamaged(
        f"the database {path} is damaged ({reason}); nothing was changed. Restore a copy of it"
        + (f" (or first move its write-ahead log aside: mv '{wal}' '{wal}.damaged', and try again)" if wal.exists()
           else "") + f"; python -m dff_core --db '{path}' check says what is wrong")


def default_db_path() -> Path:
    """``DFF_DB`` if set, else ``data/dff_studio.duckdb`` under the current directory."""
    return Path(os.environ.get("DFF_DB") or DEFAULT_DB)


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def retry_on_lock(open_fn: Callable[[], T], path: Path, timeout: float | None = None) -> T:
    """Call ``open_fn`` until it stops failing on the file lock, with jittered exponential backoff."""
    if timeout is None:
        timeout = float(os.environ.get("DFF_DB_TIMEOUT", "120"))
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            return open_fn()
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                raise DatabaseBusy(
                    f"the database {path} stayed locked by another process for {timeout:.0f} s; "
                    "is a stuck job holding it? Stop it or raise DFF_DB_TIMEOUT") from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.1)


class _Hold:
    """One burst's anchor connection (``Database.held_open``), given back exactly once: by the block's end, by
    the first session after the deadline, or by a timer at the deadline, whichever comes first. The anchor runs
    no statement, so closing it from the timer's thread only lets go of this process's open database."""

    def __init__(self, anchor, seconds: float):
        self._lock = threading.Lock()
        self._anchor = anchor
        self._until = time.monotonic() + seconds
        self._timer = threading.Timer(max(0.0, seconds), self.release)
        self._timer.daemon = True
        self._timer.start()

    def expired(self) -> bool:
        return time.monotonic() > self._until

    def release(self) -> None:
        with self._lock:
            anchor, self._anchor = self._anchor, None
        if threading.current_thread() is not self._timer:
            self._timer.cancel()
        if anchor is not None:
            anchor.close()


class Database:
    """A handle on one DuckDB file. Cheap to create; holds no connection between calls."""

    _migrated: set[str] = set()
    _migrate_lock = threading.Lock()

    def __init__(self, path: str | Path | None = None, timeout: float | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._held = threading.local()  # this thread's hold (``_Hold``): its open anchor connection
        self.engine = sa.create_engine("duckdb:///" + str(self.path), poolclass=NullPool)
        sa.event.listen(self.engine, "do_connect", self._do_connect)
        self._ensure_schema()

    def side_dir(self, kind: str) -> Path:
        """``<db dir>/<kind>/<db file stem>``: files that belong to this database (checkpoints, caches).

        The file stem keeps two databases in one folder apart: their run and feature-set ids overlap."""
        return self.path.parent / kind / self.path.stem

    def _do_connect(self, dialect, conn_rec, cargs, cparams):
        try:
            return retry_on_lock(lambda: dialect.connect(*cargs, **cparams), self.path, self.timeout)
        except duckdb.Error as exc:
            damaged = damage(exc, self.path)
            if damaged is None:
                raise
            raise damaged from exc

    def _ensure_schema(self) -> None:
        key = str(self.path.resolve())
        with Database._migrate_lock:
            if key in Database._migrated:
                return
            from storage.migrations import migrate

            with self.session() as conn:
                migrate(conn)
            Database._migrated.add(key)

    @contextmanager
    def session(self) -> Iterator[sa.Connection]:
        """One short transaction: open, yield, commit (or roll back on error), close."""
        hold = getattr(self._held, "hold", None)
        if hold is not None and hold.expired():
            hold.release()                             # a burst that ran long gives the file back
        try:
            with self.engine.begin() as conn:
                yield conn
        except (duckdb.Error, sa.exc.DBAPIError) as exc:   # damage read mid-query: one line, not DuckDB's words
            damaged = damage(exc, self.path)
            if damaged is None:
                raise
            raise damaged from exc

    def checkpoint(self) -> bool:
        """Move what the write-ahead log holds into the main file (DuckDB's ``CHECKPOINT``), so a committed import
        or result no longer depends on the log: a log cut short by a crash silently drops its last commits.
        False when DuckDB declines (another transaction of this process is open); the next one catches up."""
        try:
            with self.session() as conn:
                Database.raw(conn).execute("CHECKPOINT")
            return True
        except (duckdb.Error, sa.exc.DBAPIError):
            return False

    @contextmanager
    def held_open(self, seconds: float = HOLD_SECONDS) -> Iterator[None]:
        """Keep the file open in this thread for a burst of sessions, at most ``seconds``.

        Why: opening the file costs 0.04-0.2 s (lock, catalogue, write-ahead log) and a dashboard page run makes
        20-90 sessions. While one connection of this process stays open, DuckDB hands every new connection of
        the process the same open database, so the sessions inside cost ~3 ms each. Other processes cannot open
        the file meanwhile and wait (as they do for any session), so the hold ends with the block, or after
        ``seconds`` by a timer (``_Hold``) even when the block then makes no storage call at all — a slow page
        never keeps a job worker's heartbeats out for longer. After that, each session opens the file on its
        own. Nested holds are one hold.
        """
        if getattr(self._held, "hold", None) is not None:
            yield
            return
        self._held.hold = _Hold(self.engine.raw_connection(), seconds)
        try:
            yield
        finally:
            hold, self._held.hold = self._held.hold, None
            hold.release()

    @staticmethod
    def raw(conn: sa.Connection) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection under a SQLAlchemy one, for Arrow bulk transfers."""
        return conn.connection.driver_connection

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in [self.path, Path(str(self.path) + ".wal")] if p.exists())
