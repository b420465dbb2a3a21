"""Neighbour scores on centred vectors: the maths, the planted-set measurement, the cache and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dff_core.neighbours.index import build_index, exact_search, normalise, score_digits
from dff_core.neighbours.quality import planted_vectors, precision_at_k, score_spread


def test_centring_spreads_scores_that_raw_cosine_squeezes_near_one():
    """A shared offset 40x the item signal: raw cosine puts every pair near 1, centred cosine near 0."""
    x, labels = planted_vectors(nuisance_dims=0)
    raw, centred = score_spread(x, similarity="raw"), score_spread(x, similarity="centred")
    assert raw["random"] > 0.99 and raw["top_k"] - raw["random"] < 0.01
    assert abs(centred["random"]) < 0.05 and centred["top_k"] > 0.4
    unit, ok = normalise(x, "centred")
    assert ok.all() and np.allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(unit.sum(axis=0) / len(unit), 0, atol=0.02)  # the mean direction is gone


def test_planted_set_precision_by_similarity():
    """Label-free directions of large variance (as in LLM layers): centring helps a little, removing the
    dominant directions a lot; without them every similarity but whitening finds the labels."""
    x, labels = planted_vectors()
    got = {s: round(precision_at_k(x, labels, 10, s), 3) for s in ("raw", "centred", "top-removed", "whitened")}
    assert got == {"raw": 0.216, "centred": 0.251, "top-removed": 0.988, "whitened": 0.538}
    x, labels = planted_vectors(nuisance_dims=0)
    assert precision_at_k(x, labels, 10, "raw") == precision_at_k(x, labels, 10, "centred") == 1.0


def test_centred_index_matches_the_reference_and_leaves_absent_rows_out():
    x, _ = planted_vectors(n_items=200, seed=1)
    present = np.ones(len(x), bool)
    present[5] = False
    queries = np.array([0, 7, 42])
    for metric in ("centred", "raw", "top-removed"):
        index = build_index(x, present, kind="exact", metric=metric)
        ids, scores = index.search_many(queries, 10)
        want_ids, want_scores = exact_search(x, queries, 10, present=present, metric=metric)
        assert index.metric == metric and (ids == want_ids).all() and 5 not in ids
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    # the centre is the mean of present rows only: an absent outlier does not move it
    y = x.copy()
    y[5] = 1e6
    a, _ = normalise(x, "centred", present)
    b, _ = normalise(y, "centred", present)
    np.testing.assert_allclose(a[present], b[present], atol=1e-5)
    with pytest.raises(ValueError, match="similarity must be one of"):
        normalise(x, "cosine")


@pytest.mark.parametrize("scores, digits", [([0.99981, 0.99992, 0.99979], 5), ([0.5, 0.5, 0.3], 3),
                                            ([0.9998, 0.9999, 0.99985], 5), ([0.91, 0.5], 3)])
def test_score_digits_tell_neighbours_apart(scores, digits):
    assert score_digits(scores) == digits
    printed = [f"{s:.{digits}f}" for s in sorted(set(scores))]
    assert len(set(printed)) == len(printed)


def test_cache_and_cli_keep_similarities_apart(tmp_path, capsys):
    from cli import main
    from data_helpers import write_generic
    from jobs import neighbours as nb
    from jobs.datasets import import_generic
    from jobs.workflows import import_features_npz
    from storage import Database
    from storage.datasets import get_dataset, load_items

    db = Database(tmp_path / "n.duckdb")
    import_generic(db, "small", *write_generic(tmp_path / "d", n_users=20, n_items=40, seq=5))
    items = load_items(db, get_dataset(db, "small").id)
    x, _ = planted_vectors(n_items=len(items), dim=16, seed=2, mean_norm=2.0)
    x = x.astype(np.float16).astype(np.float32)  # what the feature set stores
    np.savez(tmp_path / "f.npz", item_ids=np.asarray(items["item_id"].tolist(), dtype=str), features=x[:, None, :])
    import_features_npz(db, "feats", "small", tmp_path / "f.npz", backbone="synthetic")
    source = nb.feature_source(db, "feats")
    centred, raw = nb.get_index(db, source), nb.get_index(db, source, metric="raw")
    assert (centred.metric, raw.metric) == ("centred", "raw") and centred is not raw
    assert nb.get_index(db, source) is centred
    query = str(items["item_id"].iloc[3])
    for metric in ("centred", "raw"):
        assert main(["--db", str(db.path), "neighbours", "--features", "feats", "--item", query, "--k", "5",
                     "--similarity", metric, "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        want_ids, want_scores = exact_search(x, np.array([3]), 5, metric=metric)
        assert [r["item_id"] for r in rows] == items["item_id"].to_numpy()[want_ids[0]].tolist()
        np.testing.assert_allclose([r["score"] for r in rows], want_scores[0], atol=1e-5)
    assert main(["--db", str(db.path), "neighbours", "--features", "feats", "--item", query, "--similarity",
                 "raw"]) == 0
    out = capsys.readouterr().out
    assert "score: raw cosine" in out
