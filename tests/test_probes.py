"""Layer usefulness score, run comparison and extraction estimates (the numbers behind the dashboard)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dff_core import compare
from dff_core.estimates import DEFAULT_ITEMS_PER_S, extraction_estimate
from dff_core.probes import cowatch_matrix
from jobs.probes import cached_layer_usefulness, layer_usefulness


def test_cowatch_matrix_is_symmetric_within_window():
    m = cowatch_matrix([np.array([0, 1, 2, 3])], 5, window=1).toarray()
    expected = np.zeros((5, 5))
    for a, b in ((0, 1), (1, 2), (2, 3)):
        expected[a, b] = expected[b, a] = 1
    assert (m == expected).all()
    m2 = cowatch_matrix([np.array([0, 1, 2, 3])], 5, window=2).toarray()
    assert m2[0, 2] == 1 and m2[0, 3] == 0 and m2.diagonal().sum() == 0


@pytest.fixture
def topic_db(tmp_path, db):
    """60 users who each watch 8 items of one of 3 topics; features: layer 0 knows the topic, layer 1 is noise."""
    from jobs.datasets import import_generic
    from jobs.workflows import import_features_npz
    from storage.datasets import get_dataset

    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,timestamp"]
    for u in range(60):
        topic = u % 3
        for k, item in enumerate(rng.choice(np.arange(topic, 30, 3), size=8, replace=False)):
            lines.append(f"u{u},i{item},{k}")
    (tmp_path / "inter.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "items.csv").write_text("item_id,title\n" + "".join(f"i{i},t{i}\n" for i in range(30)))
    import_generic(db, "topics", tmp_path / "inter.csv", tmp_path / "items.csv")
    centres = rng.normal(size=(3, 16)) * 3
    ids = [f"i{i}" for i in range(30)]
    signal = np.stack([centres[i % 3] + rng.normal(size=16) for i in range(30)])
    noise = rng.normal(size=(30, 16))
    np.savez(tmp_path / "f.npz", item_ids=np.asarray(ids, dtype=str),
             features=np.stack([signal, noise], axis=1).astype(np.float32))
    fs = import_features_npz(db, "two", "topics", tmp_path / "f.npz")
    assert get_dataset(db, "topics").stats["items"] == 30
    return db, fs


def test_layer_usefulness_separates_signal_from_noise(topic_db):
    db, fs = topic_db
    scores = layer_usefulness(db, fs, k=5)
    assert scores["layer"].tolist() == [0, 1]
    signal, noise = scores["lift"].tolist()
    assert signal > 1.8, scores
    assert 0.4 < noise < 1.5, scores
    assert 0 < scores["chance"].iloc[0] < 1 and scores.attrs["items"] == 30


def test_layer_usefulness_is_cached(topic_db, monkeypatch):
    import jobs.probes as probes

    db, fs = topic_db
    first = cached_layer_usefulness(db, fs, k=5)
    monkeypatch.setattr(probes, "layer_usefulness", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    second = cached_layer_usefulness(db, fs, k=5)
    assert np.allclose(first["lift"], second["lift"]) and second.attrs["items"] == 30
    with pytest.raises(AssertionError, match="recomputed"):  # other parameters are another cache entry
        cached_layer_usefulness(db, fs, k=3)


def _runs() -> pd.DataFrame:
    rows = []
    for rid, (strategy, layers, layer, seed, ndcg) in enumerate([
            ("id", "—", None, 1, 0.10), ("id", "—", None, 2, 0.12),
            ("dff", "all", None, 1, 0.20), ("dff", "all", None, 2, 0.24),
            ("gate", "3", 3, 1, 0.15), ("gate", "5", 5, 1, 0.18), ("gate", "5", 5, 2, 0.16)], start=1):
        rows.append({"run_id": rid, "dataset": "d", "study": "s", "backbone": "ID only" if strategy == "id" else "b",
                     "features": "" if strategy == "id" else "f", "strategy": strategy, "layers": layers,
                     "layer": layer, "seed": seed, "test NDCG@10": ndcg, "cold NDCG@10": ndcg / 2,
                     "warm NDCG@10": ndcg * 1.5, "cold users": 10, "warm users": 90})
    return pd.DataFrame(rows)


def test_leaderboard_mean_std_over_seeds():
    board = compare.leaderboard(_runs())
    assert board["strategy"].tolist()[0] == "dff"
    dff = board.iloc[0]
    assert dff["seeds"] == 2 and dff["mean"] == pytest.approx(0.22) and dff["std"] == pytest.approx(np.std([.2, .24], ddof=1))
    assert dff["runs"] == "3, 4"
    single = board[(board["strategy"] == "gate") & (board["layers"] == "3")].iloc[0]
    assert single["std"] == 0.0 and single["NDCG@10 (mean ± std)"] == "0.1500 (1 seed)"  # no spread to show


def test_layer_curve_strategy_bars_and_buckets():
    runs = _runs()
    curve = compare.layer_curve(runs)
    assert curve["layer"].tolist() == [3, 5] and curve["mean"].tolist() == pytest.approx([0.15, 0.17])
    bars = compare.strategy_bars(runs)
    gate = bars[bars["strategy"] == "gate"]
    assert len(gate) == 1 and gate["layers"].item() == "5"  # the best layer choice only
    buckets = compare.bucket_frame(runs)
    cold_id = buckets[(buckets["strategy"] == "id") & (buckets["bucket"] == "cold")]["mean"].item()
    assert cold_id == pytest.approx(0.055)
    assert compare.filter_runs(runs, strategies=["id"])["run_id"].tolist() == [1, 2]
    assert compare.leaderboard(runs.iloc[0:0]).empty


def test_weight_spread_says_chose_or_averaged():
    w = pd.DataFrame({"run": ["a"] * 4 + ["b"] * 4 + ["c"] * 4, "layer": [0, 8, 15, 30] * 3,
                      "weight": [0.25] * 4 + [0.1, 0.7, 0.1, 0.1] + [0.2, 0.2, 0.2, 0.4]})
    s = compare.weight_spread(w, by="run").set_index("run")
    assert s.loc["a", "max / uniform"] == pytest.approx(1.0) and s.loc["a", "entropy / max"] == pytest.approx(1.0)
    assert s.loc["a", "effective layers"] == pytest.approx(4.0) and s.loc["a", "reading"] == "averaged"
    assert s.loc["b", "top layer"] == 8 and s.loc["b", "max weight"] == pytest.approx(0.7)
    assert s.loc["b", "max / uniform"] == pytest.approx(2.8) and s.loc["b", "reading"] == "chose layer 8"
    h = -(0.7 * np.log(0.7) + 3 * 0.1 * np.log(0.1))
    assert s.loc["b", "entropy / max"] == pytest.approx(h / np.log(4)) and s.loc["b", "effective layers"] == pytest.approx(np.exp(h))
    assert s.loc["c", "reading"] == "leans to layer 30" and s.loc["c", "max / uniform"] == pytest.approx(1.6)
    one = compare.weight_spread(pd.DataFrame({"run_id": [1], "layer": [5], "weight": [1.0]}))
    assert one["max / uniform"].item() == 1.0 and one["entropy / max"].item() == 0.0
    assert compare.weight_spread(w.iloc[0:0], by="run").empty


def test_extraction_estimate_disk_and_time():
    est = extraction_estimate(1000, 25, 896, "smollm2", ["title"], 8)
    assert est["bytes"] == 1000 * 25 * 896 * 2 and not est["measured"]
    assert est["seconds"] == pytest.approx(1000 / DEFAULT_ITEMS_PER_S["smollm2"])
    frames = extraction_estimate(1000, 25, 896, "efficientnet-lite0", ["frames"], 8)
    assert frames["seconds"] > 1000 / DEFAULT_ITEMS_PER_S["efficientnet-lite0"]  # more frames, more time
    measured = extraction_estimate(100, 2, 4, "smollm2", ["title"], 1, dtype="float32", measured_items_per_s=50)
    assert measured["bytes"] == 100 * 2 * 4 * 4 and measured["seconds"] == pytest.approx(2.0) and measured["measured"]
