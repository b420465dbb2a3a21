"""Storage: feature vectors round-trip, schema migrations, runs and metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa

from data_helpers import write_generic
from jobs.datasets import import_generic
from storage import Database, NotFound
from storage.features import (create_feature_set, delete_feature_set, failures, get_feature_set, read_features,
                              record_failure, stored_items, write_vectors)
from storage.migrations import MIGRATIONS, current_version, migrate
from storage.runs import create_run, finish_run, get_run, log_metrics, run_metrics

@pytest.fixture
def dataset(db, tmp_path):
    inter, items = write_generic(tmp_path / "d", n_users=12, n_items=20, seq=6)
    return import_generic(db, "d", inter, items)

@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_vectors_round_trip_in_any_write_order(db, dataset, dtype):
    n = dataset.stats["items"]
    fs = create_feature_set(db, "d", "f", "test", num_layers=4, dim=8, dtype=dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4, 8)).astype(np.float32)
    order = rng.permutation(n)
    for chunk in np.array_split(order, 3):  # batches in arbitrary item order, like a resumed extraction
        write_vectors(db, fs, chunk, x[chunk])
    out, present = read_features(db, fs)
    assert out.shape == (n, 4, 8) and out.dtype == np.float32 and present.all()
    tol = 1e-3 if dtype == "float16" else 0
    np.testing.assert_allclose(out, x, atol=tol * 4, rtol=tol)
    sub, _ = read_features(db, fs, layers=[3, 1])
    np.testing.assert_array_equal(sub, out[:, [3, 1]])
    assert stored_items(db, fs) == set(range(n))

def test_partial_sets_failures_and_rewrite(db, dataset):
    n = dataset.stats["items"]
    fs = create_feature_set(db, "d", "f", "test", num_layers=2, dim=3)
    write_vectors(db, fs, [0, 2], np.ones((2, 2, 3)))
    record_failure(db, fs, 1, "cannot decode videos/1.mp4")
    out, present = read_features(db, fs)
    assert present.tolist() == [True, False, True] + [False] * (n - 3)
    assert (out[1] == 0).all() and (out[0] == 1).all()
    assert failures(db, fs) == {1: "cannot decode videos/1.mp4"}
    # a retried item replaces its vectors and clears its failure; no duplicate rows
    write_vectors(db, fs, [1, 2], np.full((2, 2, 3), 2.0))
    out, present = read_features(db, fs)
    assert failures(db, fs) == {} and (out[2] == 2).all() and present[:3].all()
    with db.session() as conn:
        assert db.raw(conn).execute(f"SELECT count(*) FROM {fs.location}").fetchall()[0][0] == 3 * 2

def test_vector_validation(db, dataset):
    fs = create_feature_set(db, "d", "f", "test", num_layers=2, dim=3)
    with pytest.raises(ValueError, match=r"expected features of shape \[1, 2, 3\]"):
        write_vectors(db, fs, [0], np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        write_vectors(db, fs, [0], np.full((1, 2, 3), np.nan))
    with pytest.raises(OverflowError, match="float16"):
        write_vectors(db, fs, [0], np.full((1, 2, 3), 1e6))
    with pytest.raises(ValueError, match="layers 0..1"):
        read_features(db, fs, layers=[2])
    with pytest.raises(ValueError, match="already exists"):
        create_feature_set(db, "d", "f", "test", num_layers=2, dim=3)
    assert create_feature_set(db, "d", "f", "test", num_layers=2, dim=3, exist_ok=True).id == fs.id
    delete_feature_set(db, fs)
    with pytest.raises(NotFound):
        get_feature_set(db, "f")

def test_migrations_upgrade_an_old_file_and_refuse_a_newer_one(tmp_path):
    path = tmp_path / "old.duckdb"
    engine = sa.create_engine(f"duckdb:///{path}")
    with engine.begin() as conn:
        migrate(conn, MIGRATIONS[:1])
        conn.execute(sa.text("INSERT INTO datasets (name, source, params, stats, warnings) "
                             "VALUES ('kept', 'generic', '{}', '{\"users\": 1}', '[]')"))
    engine.dispose()
    future = MIGRATIONS + [["ALTER TABLE runs ADD COLUMN notes VARCHAR"]]
    engine = sa.create_engine(f"duckdb:///{path}")
    with engine.begin() as conn:
        assert current_version(conn) == 1
        assert migrate(conn, future) == len(future)
        assert conn.execute(sa.text("SELECT name FROM datasets")).scalar() == "kept"
        conn.execute(sa.text("INSERT INTO runs (dataset_id, strategy, config, status, notes) "
                             "VALUES (1, 'id', '{}', 'done', 'new column works')"))
        # applying again is a no-op
        assert migrate(conn, future) == len(future)
        assert conn.execute(sa.text("SELECT count(*) FROM schema_version")).scalar() == len(future)
        with pytest.raises(RuntimeError, match="newer DFF Studio"):
            migrate(conn, MIGRATIONS)
    engine.dispose()

def test_runs_and_metrics_upsert(db, dataset):
    run = create_run(db, dataset.id, "dff", {"epochs": 3}, layers=[0, 1], seed=1)
    log_metrics(db, run.id, 1, "val", {"NDCG@10": 0.1, "HR@10": 0.2})
    log_metrics(db, run.id, 1, "val", {"NDCG@10": 0.15, "HR@10": 0.25})  # replayed after a resume
    log_metrics(db, run.id, 2, "val", {"NDCG@10": 0.3})
    m = run_metrics(db, [run.id])
    assert len(m) == 3
    assert m.query("epoch == 1 and name == 'NDCG@10'")["value"].item() == pytest.approx(0.15)
    finish_run(db, run.id, "done", result={"test": {"NDCG@10": 0.2}}, best_epoch=2, epochs_run=2, seconds=1.5)
    r = get_run(db, run.id)
    assert (r.status, r.best_epoch, r.layers, r.result["test"]["NDCG@10"]) == ("done", 2, [0, 1], 0.2)

def test_db_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DFF_DB", str(tmp_path / "env.duckdb"))
    assert Database().path == tmp_path / "env.duckdb"
    assert (tmp_path / "env.duckdb").exists()

def test_ending_column_backfills_old_runs_from_their_history(tmp_path):
    """Migration 2 adds runs.ending and derives it for stored runs from result, config and per-epoch history."""
    path = tmp_path / "old.duckdb"
    engine = sa.create_engine(f"duckdb:///{path}")
    rows = [  # (status, result, config, best_epoch, epochs_run, validated epochs) -> expected ending
        ("cancelled", None, {"epochs": 15, "patience": 5}, None, 3, [1, 2, 3], "cancelled"),
        ("done", {"stopped_early": True}, {"epochs": 50, "patience": 5}, 10, 15, range(1, 16), "early_stopped"),
        ("done", {"stopped_early": False}, {"epochs": 15, "patience": 3}, 14, 15, range(1, 16), "capped_improving"),
        ("done", {}, {"epochs": 15, "patience": 3}, 12, 15, range(1, 16), "early_stopped"),  # patience ran out at 15
        ("done", {}, {"epochs": 15, "patience": 0}, 3, 15, range(1, 16), "capped_converged"),
        ("done", {}, {"epochs": 15, "patience": 0}, 12, 15, range(1, 16), "capped_improving"),
        # eval_every = 4: evaluations at 4, 8, 12, 15; best 8 -> 2 evaluations after it, patience 3: still improving
        ("done", {}, {"epochs": 15, "patience": 3, "eval_every": 4}, 8, 15, [4, 8, 12, 15], "capped_improving"),
        ("running", None, {"epochs": 15}, None, None, [1], None),
    ]
    with engine.begin() as conn:
        migrate(conn, MIGRATIONS[:1])
        for i, (status, result, config, best, run, val_epochs, _) in enumerate(rows, start=1):
            conn.execute(sa.text("INSERT INTO runs (id, dataset_id, strategy, config, status, result, best_epoch, "
                                 "epochs_run) VALUES (:i, 1, 'id', :c, :s, :r, :b, :e)"),
                         {"i": i, "c": json.dumps(config), "s": status, "r": json.dumps(result) if result is not None
                          else None, "b": best, "e": run})
            for epoch in val_epochs:
                conn.execute(sa.text("INSERT INTO metrics VALUES (:r, :e, 'val', 'NDCG@10', 0.1)"), {"r": i, "e": epoch})
        migrate(conn)
        got = conn.execute(sa.text("SELECT ending FROM runs ORDER BY id")).scalars().all()
    engine.dispose()
    assert got == [r[-1] for r in rows]
    db = Database(path)
    assert get_run(db, 3).ending == "capped_improving"
    finish_run(db, 8, "done", result={}, best_epoch=4, epochs_run=9, ending="early_stopped")
    assert get_run(db, 8).ending == "early_stopped"


def test_lookups_by_name_then_id(db, tmp_path):
    """A typed reference (str) is a name first, a numeric id otherwise; an int passed by code is an id only, even
    where a row stored before the name rule is named like it; a miss names what exists."""
    import sqlalchemy as sa

    from storage.datasets import get_dataset

    inter, items = write_generic(tmp_path / "d", n_users=12, n_items=20, seq=6)
    first = import_generic(db, "a", inter, items)
    second = import_generic(db, "b", inter, items)
    with db.session() as conn:   # a dataset named like the first one's id, as stored before the name rule
        conn.execute(sa.text("UPDATE datasets SET name = :n WHERE id = :i"), {"n": str(first.id), "i": second.id})
    assert get_dataset(db, "a").id == first.id
    assert get_dataset(db, str(first.id)).id == second.id      # the typed name wins
    assert get_dataset(db, first.id).id == first.id            # an id from code is an id
    assert get_dataset(db, second.id).id == second.id          # no dataset is named like this id
    with pytest.raises(NotFound, match=rf"no dataset 'zz'; known datasets: a, {first.id}"):
        get_dataset(db, "zz")
    fa = create_feature_set(db, "a", "f", "test", num_layers=1, dim=4)
    fb = create_feature_set(db, second.id, "f", "test", num_layers=1, dim=4)
    named = create_feature_set(db, "a", "g", "test", num_layers=1, dim=4)
    with db.session() as conn:
        conn.execute(sa.text("UPDATE feature_sets SET name = :n WHERE id = :i"), {"n": str(fb.id), "i": named.id})
    assert get_feature_set(db, "f", dataset="a").id == fa.id
    assert get_feature_set(db, "f", dataset=second.id).id == fb.id
    with pytest.raises(ValueError, match="several datasets have a feature set named 'f'"):
        get_feature_set(db, "f")
    assert get_feature_set(db, str(fb.id)).id == named.id       # the typed name wins here too
    assert get_feature_set(db, fb.id).id == fb.id               # an id from code is an id
    assert get_feature_set(db, fa.id).id == fa.id
    assert get_feature_set(db, str(fa.id), dataset=second.id).id == fa.id   # an id is global
    with pytest.raises(NotFound, match=rf"known feature sets: f, f, {fb.id}"):
        get_feature_set(db, "nope")
