"""Fenced writes that share their connection with a bulk insert: the claim check leaves no unfinished result
behind, so an extraction job's vectors (``write_vectors`` under its runner's claim) are stored.

Found by ``bench/bench_load.py``: every extraction job failed at its first block of vectors with DuckDB's
"connection has an unfinished result" (the check read one row of its query and left the rest)."""
from __future__ import annotations

import os

import numpy as np

from data_helpers import write_generic
from jobs.datasets import import_generic
from storage import queue
from storage.features import create_feature_set, read_features, write_vectors
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
