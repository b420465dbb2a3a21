"""Deleting a dataset and everything derived from it: the one place that knows the cascade across tables.

Kept apart from ``storage.datasets`` because the cascade needs ``storage.features`` (which itself looks
datasets up): with the delete in ``datasets`` the two modules imported each other.
"""
from __future__ import annotations

import sqlalchemy as sa

from storage.datasets import get_dataset
from storage.db import Database
from storage.features import drop_feature_set_rows


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
