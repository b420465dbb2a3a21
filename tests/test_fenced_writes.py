"""Storage writes under load, as ``bench/bench_load.py`` found them failing:

* a fenced write that shares its connection with a bulk insert: the claim check leaves no unfinished result
  behind, so an extraction job's vectors (``write_vectors`` under its runner's claim) are stored (every
  extraction job failed at its first block of vectors with DuckDB's "connection has an unfinished result");
* two sessions of one dashboard marking the same stale job at once: the one DuckDB refuses ("Conflict on tuple
  deletion") runs again instead of putting an exception on the Jobs page."""
from __future__ import annotations

import os

import numpy as np

from data_helpers import write_generic
from jobs.datasets import import_generic
from storage import queue
from storage.features import create_feature_set, read_features, write_vectors
from storage import db as db_module
from storage.owners import Owner


def test_vectors_written_under_a_claim_are_stored(db, tmp_path):
    ds = import_generic(db, "d", *write_generic(tmp_path / "d", n_users=20, n_items=10, seq=5))
    queue.enqueue(db, "extract", {"dataset": "d"})
    job = queue.claim_next(db, os.getpid())
    owner = Owner(job.id, job.claim_token)
    fs = create_feature_set(db, ds.id, "f", "b", 2, 4, dtype="float32", owner=owner)
    vectors = np.arange(2 * 2 * 4, dtype=np.float32).reshape(2, 2, 4)
    write_vectors(db, fs, [3, 5], vectors, owner=owner)
    feats, present = read_features(db, fs, layers=[0, 1], dtype=np.float32)
    assert np.flatnonzero(present).tolist() == [3, 5]
    np.testing.assert_array_equal(feats[[3, 5]], vectors)


def test_a_write_refused_for_a_tuple_deletion_conflict_runs_again(monkeypatch):
    """DuckDB's words when two sessions of one process update the same job row ("Conflict on tuple deletion",
    seen on the Jobs page under load) count as a conflict: the transaction runs again, as for "Conflict on
    update". ``mark_stale``, which every Jobs page view runs, is one such transaction."""
    monkeypatch.setattr(db_module.time, "sleep", lambda seconds: None)
    calls: list[int] = []

    @db_module.retry_on_conflict
    def write() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("(duckdb.TransactionException) TransactionContext Error: Conflict on tuple deletion!")
        return "written"

    assert write() == "written" and len(calls) == 2
    assert getattr(queue.mark_stale, "__wrapped__", None) is not None  # mark_stale is retried the same way
