"""Deleting a dataset and everything derived from it, or one feature set: the one place that knows the cascade
across tables.

Kept apart from ``storage.datasets`` because the cascade needs ``storage.features`` (which itself looks
datasets up): with the delete in ``datasets`` the two modules imported each other.
"""
from __future__ import annotations

import sqlalchemy as sa

from storage import owners
from storage.datasets import get_dataset
from storage.db import Database
from storage.features import drop_feature_set_rows, get_feature_set
from storage.records import FeatureSetRecord


def delete_dataset(db: Database, name: str) -> None:
    """Remove a dataset and everything derived from it (feature sets, runs, metrics)."""
    ds = get_dataset(db, name)
    with db.session() as conn:
        fs_ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM feature_sets WHERE dataset_id = :d"),
                                             {"d": ds.id})]
        for fs_id in fs_ids:
            drop_feature_set_rows(conn, fs_id)
        run_ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM runs WHERE dataset_id = :d"), {"d": ds.id})]
        for run_id in run_ids:
            conn.execute(sa.text("DELETE FROM metrics WHERE run_id = :r"), {"r": run_id})
        for table in ("runs", "interactions", "users", "items", "splits"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE dataset_id = :d"), {"d": ds.id})
        conn.execute(sa.text("DELETE FROM datasets WHERE id = :d"), {"d": ds.id})


def delete_features(db: Database, ref: str | int, dataset: str | int | None = None) -> FeatureSetRecord:
    """Remove one feature set (its vectors, failures, captions and row); the runs trained on it keep their
    results. Refused while a live process writes it (an extraction or import in progress: cancel it first) or
    a queued or running job of this database names it. Returns the removed set's record."""
    fs = get_feature_set(db, ref, dataset=dataset)
    with db.session() as conn:
        row = conn.execute(sa.text("SELECT status, writer, job_id FROM feature_sets WHERE id = :i"),
                           {"i": fs.id}).first()
        if row.status == "running" and owners.alive(row.writer) is not False:
            raise ValueError(f"feature set {fs.name!r} is being written right now"
                             + (f" by job {row.job_id}" if row.job_id else "")
                             + "; cancel that first, then delete it")
        name = sa.func.json_extract_string
        users = conn.execute(sa.select(sa.column("id")).select_from(sa.table("jobs")).where(
            sa.column("status").in_(("queued", "running")),
            sa.or_(name(sa.column("params"), "$.features") == fs.name,
                   name(sa.column("params"), "$.features") == str(fs.id),
                   (sa.column("kind") == "extract") & (name(sa.column("params"), "$.name") == fs.name)))).fetchall()
        if users:
            raise ValueError(f"feature set {fs.name!r} is named by queued or running job(s) "
                             f"{', '.join(str(r[0]) for r in users[:5])}; cancel them first, then delete it")
        drop_feature_set_rows(conn, fs.id)
    return fs
