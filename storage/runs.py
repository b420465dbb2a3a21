"""Training runs and their per-epoch metrics.

Writes that a job's runner makes take its claim (``owner``, ``storage.owners``) and happen only while the
job is still that runner's: a run has one writer."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from storage.lazy import pd
import sqlalchemy as sa

from storage import owners
from storage.db import Database, NotFound
from storage.owners import Owner


@dataclass
class RunRecord:
    id: int
    dataset_id: int
    feature_set_id: int | None
    strategy: str
    layers: list | None
    config: dict
    status: str
    study: str | None
    job_id: int | None
    seed: int | None
    best_epoch: int | None
    epochs_run: int | None
    seconds: float | None
    seconds_per_epoch: float | None
    result: dict | None
    error: str | None
    ending: str | None = None            # dff_core.train.endings: early_stopped | capped_improving | ...
    created_at: object = None
    finished_at: object = None


def _record(row) -> RunRecord:
    return RunRecord(
        id=row.id, dataset_id=row.dataset_id, feature_set_id=row.feature_set_id, strategy=row.strategy,
        layers=json.loads(row.layers) if row.layers else None, config=json.loads(row.config), status=row.status,
        study=row.study, job_id=row.job_id, seed=row.seed, best_epoch=row.best_epoch, epochs_run=row.epochs_run,
        seconds=row.seconds, seconds_per_epoch=row.seconds_per_epoch,
        result=json.loads(row.result) if row.result else None, error=row.error,
        ending=getattr(row, "ending", None), created_at=row.created_at,
        finished_at=row.finished_at)


def create_run(db: Database, dataset_id: int, strategy: str, config: dict, *, feature_set_id: int | None = None,
               layers: list[int] | None = None, seed: int | None = None, study: str | None = None,
               job_id: int | None = None, owner: Owner | None = None) -> RunRecord:
    with db.session() as conn:
        owners.check(conn, owner)
        run_id = conn.execute(sa.text(
            "INSERT INTO runs (dataset_id, feature_set_id, strategy, layers, config, status, study, job_id, seed) "
            "VALUES (:d, :f, :s, :l, :c, 'running', :st, :j, :seed) RETURNING id"),
            {"d": dataset_id, "f": feature_set_id, "s": strategy, "l": json.dumps(layers) if layers is not None else None,
             "c": json.dumps(config), "st": study, "j": job_id, "seed": seed}).scalar_one()
    return get_run(db, run_id)


def get_run(db: Database, run_id: int) -> RunRecord:
    with db.session() as conn:
        row = conn.execute(sa.text("SELECT * FROM runs WHERE id = :i"), {"i": int(run_id)}).first()
    if row is None:
        raise NotFound(f"no run with id {run_id}")
    return _record(row)


def list_runs(db: Database, dataset_id: int | None = None, study: str | None = None,
              ids: list[int] | None = None) -> list[RunRecord]:
    """Runs by id, optionally of one dataset, one study, or only those ``ids`` (an empty list: none)."""
    if ids is not None and not ids:
        return []
    query, args = "SELECT * FROM runs WHERE 1=1", {}
    if dataset_id is not None:
        query, args["d"] = query + " AND dataset_id = :d", dataset_id
    if study is not None:
        query, args["s"] = query + " AND study = :s", study
    statement = sa.text(query + (" AND id IN :ids" if ids is not None else "") + " ORDER BY id")
    if ids is not None:
        statement = statement.bindparams(sa.bindparam("ids", expanding=True))
        args["ids"] = sorted({int(i) for i in ids})
    with db.session() as conn:
        rows = conn.execute(statement, args).fetchall()
    return [_record(r) for r in rows]


def checkpoint_dir(db: Database, run_id: int) -> Path:
    """The folder of one run's training checkpoint, beside (and named after) its database."""
    return db.side_dir("checkpoints") / f"run_{int(run_id)}"


def log_metrics(db: Database, run_id: int, epoch: int, split: str, values: dict[str, float], *,
                owner: Owner | None = None) -> None:
    """Upsert one epoch's metrics: a resumed run that replays an epoch never duplicates rows."""
    with db.session() as conn:
        owners.check(conn, owner)
        for name, value in values.items():
            if value is None:
                continue
            conn.execute(sa.text("INSERT OR REPLACE INTO metrics (run_id, epoch, split, name, value) "
                                 "VALUES (:r, :e, :s, :n, :v)"),
                         {"r": run_id, "e": int(epoch), "s": split, "n": name, "v": float(value)})


def run_metrics(db: Database, run_ids: list[int] | None = None) -> pd.DataFrame:
    """Long table: run_id, epoch, split, name, value."""
    with db.session() as conn:
        raw = Database.raw(conn)
        if run_ids is None:
            return raw.execute("SELECT * FROM metrics ORDER BY run_id, epoch, split, name").df()
        if not run_ids:
            return pd.DataFrame(columns=["run_id", "epoch", "split", "name", "value"])
        ids = ", ".join(str(int(r)) for r in run_ids)
        return raw.execute(f"SELECT * FROM metrics WHERE run_id IN ({ids}) ORDER BY run_id, epoch, split, name").df()


def finish_run(db: Database, run_id: int, status: str, *, result: dict | None = None, best_epoch: int | None = None,
               epochs_run: int | None = None, seconds: float | None = None, seconds_per_epoch: float | None = None,
               error: str | None = None, ending: str | None = None, owner: Owner | None = None) -> None:
    """Record how a run finished; ``ending`` is how training ended (``dff_core.train.endings``)."""
    with db.session() as conn:
        owners.check(conn, owner)
        conn.execute(sa.text(
            "UPDATE runs SET status = :s, result = :r, best_epoch = :b, epochs_run = :e, seconds = :sec, "
            "seconds_per_epoch = :spe, error = :err, ending = :end, finished_at = current_timestamp WHERE id = :i"),
            {"s": status, "r": json.dumps(result) if result is not None else None, "b": best_epoch, "e": epochs_run,
             "sec": seconds, "spe": seconds_per_epoch, "err": error, "end": ending, "i": run_id})


def set_run_status(db: Database, run_id: int, status: str, *, owner: Owner | None = None) -> None:
    with db.session() as conn:
        owners.check(conn, owner)
        conn.execute(sa.text("UPDATE runs SET status = :s WHERE id = :i"), {"s": status, "i": run_id})


def restart_run(db: Database, run_id: int, config: dict, *, fresh: bool = False, feature_set_id: int | None = None,
                layers: list[int] | None = None, owner: Owner | None = None) -> RunRecord:
    """A run record taken up again: ``running`` under ``config`` (what this attempt trains with), its last
    outcome (result, error, ending, finish time) gone, in one fenced transaction. ``fresh`` (a run that starts
    over, e.g. a resumed Ray sweep run) also forgets its epochs and takes ``feature_set_id`` and ``layers``.

    Why: a reused record that kept its old config or error described an attempt that no longer exists."""
    with db.session() as conn:
        owners.check(conn, owner)
        params = {"c": json.dumps(config), "i": int(run_id)}
        extra = ""
        if fresh:
            extra = (", feature_set_id = :f, layers = :l, best_epoch = NULL, epochs_run = NULL, seconds = NULL, "
                     "seconds_per_epoch = NULL")
            params.update(f=feature_set_id, l=json.dumps(layers) if layers is not None else None)
        conn.execute(sa.text(
            "UPDATE runs SET status = 'running', config = :c, result = NULL, error = NULL, ending = NULL, "
            f"finished_at = NULL{extra} WHERE id = :i"), params)
        if fresh:
            conn.execute(sa.text("DELETE FROM metrics WHERE run_id = :i"), {"i": int(run_id)})
    return get_run(db, run_id)


def clear_metrics(db: Database, run_id: int) -> None:
    """Forget a run's per-epoch metrics (a run that starts over from scratch, e.g. a resumed Ray sweep run)."""
    with db.session() as conn:
        conn.execute(sa.text("DELETE FROM metrics WHERE run_id = :i"), {"i": int(run_id)})
