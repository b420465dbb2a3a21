"""Neighbour search (exact vs brute force, HNSW recall, caching), run item vectors and recommendations,
agreement, co-occurrence and the ``neighbours`` CLI, on a small demo dataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jobs import neighbours as nb
from jobs.neighbours import cache
from dff_core.neighbours.index import build_index, exact_search, recall_at_k


def clustered(n: int, dim: int, clusters: int = 20, noise: float = 0.3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    return (centres[rng.integers(0, clusters, n)] + noise * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo dataset (60 clips, 300 users), a 3-layer synthetic feature set with one item left
    without vectors, and a 2-epoch DFF run and ID run on it."""
    from jobs.datasets import import_generic
    from dff_core.demo import build_demo
    from jobs.workflows import run_training
    from storage import Database
    from storage.features import create_feature_set, finish_feature_set, write_vectors

    root = tmp_path_factory.mktemp("nb")
    files = build_demo(root / "demo", n_items=60, n_users=300)
    db = Database(root / "nb.duckdb")
    ds = import_generic(db, "demo", files.interactions_csv, files.items_csv, files.root, source="demo")
    n = ds.stats["items"]
    feats = np.stack([clustered(n, 16, seed=s) for s in range(3)], axis=1)  # [n, 3, 16]
    fs = create_feature_set(db, "demo", "syn", "synthetic", 3, 16, dtype="float32")
    write_vectors(db, fs, np.arange(n - 1), feats[:-1])                     # last item: no vectors
    finish_feature_set(db, fs, "partial", {"items": n - 1})
    settings = {"epochs": 2, "hidden": 16, "batch_size": 128, "patience": 0}
    dff = run_training(db, "demo", "dff", features="syn", layers="1-2", settings=settings, seed=3)
    ids = run_training(db, "demo", "id", settings=settings, seed=3)
    assert dff.status == ids.status == "done"
    return {"db": db, "n": n, "feats": feats, "dff": dff, "id": ids}


# ------------------------------------------------------------------------------------------- index

def test_exact_index_equals_numpy_brute_force_and_excludes_query():
    x = clustered(500, 24, seed=1)
    index = build_index(x, kind="exact")
    queries = np.array([0, 7, 123, 499])
    got_ids, got_scores = index.search_many(queries, 10)
    want_ids, want_scores = exact_search(x, queries, 10)
    assert got_ids.shape == (4, 10)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_scores, want_scores, atol=1e-5)
    assert not (got_ids == queries[:, None]).any()
    assert (np.diff(got_scores, axis=1) <= 1e-6).all()              # best first
    ids, scores = index.search(7, 3)
    np.testing.assert_array_equal(ids, want_ids[1, :3])
    assert index.recall_at_10 is None and recall_at_k(index) == 1.0


def test_hnsw_above_threshold_reports_recall_against_exact():
    x = clustered(3000, 32, clusters=60, noise=0.5, seed=2)
    index = build_index(x, exact_max_items=1000)
    assert index.kind == "hnsw" and index.size == 3000
    assert 0.8 <= index.recall_at_10 <= 1.0
    # the reported recall is what an independent count gives on the same sample
    sample = np.random.default_rng(0).choice(index.ids, size=200, replace=False)
    truth, _ = exact_search(x, sample, 10)
    got, _ = index.search_many(sample, 10)
    manual = np.mean([len(set(t) & set(g)) / 10 for t, g in zip(truth, got)])
    assert index.recall_at_10 == pytest.approx(manual, abs=1e-9)
    assert build_index(x, exact_max_items=5000).kind == "exact"


def test_items_without_vectors_are_left_out():
    x = clustered(50, 8, seed=3)
    x[5] = 0.0
    present = np.ones(50, bool)
    present[9] = False
    index = build_index(x, present)
    assert index.size == 48 and not index.present[5] and not index.present[9]
    ids, _ = index.search_many(np.arange(10, 20), 47)
    assert not np.isin(ids, [5, 9]).any() and (ids >= 0).all()
    with pytest.raises(ValueError, match="has no vector"):
        index.search(5)
    with pytest.raises(ValueError, match="fewer than two items"):
        build_index(np.zeros((4, 3)))


# ----------------------------------------------------------------------------------- stored sources

def test_feature_source_mean_of_layers_matches_brute_force(demo):
    db, feats = demo["db"], demo["feats"]
    source = nb.feature_source(db, "syn", "1-2")
    assert source.layers == (1, 2) and nb.describe(db, source) == "syn · L1-2 mean"
    index = nb.get_index(db, source)
    assert index.kind == "exact" and index.size == demo["n"] - 1
    mean = feats[:, 1:3].mean(axis=1)
    present = np.arange(demo["n"]) < demo["n"] - 1
    queries = np.array([0, 10, 30])
    want, _ = exact_search(mean, queries, 10, present=present)
    got, _ = index.search_many(queries, 10)
    np.testing.assert_array_equal(got, want)
    single = nb.get_index(db, nb.feature_source(db, "syn", "0"))
    want0, _ = exact_search(feats[:, 0], queries, 10, present=present)
    np.testing.assert_array_equal(single.search_many(queries, 10)[0], want0)


def test_cache_reuses_and_rebuilds_when_the_source_changes(demo, tmp_path):
    from jobs.datasets import import_generic
    from storage import Database
    from storage.features import create_feature_set, finish_feature_set, write_vectors

    from data_helpers import write_generic

    db = Database(tmp_path / "c.duckdb")
    import_generic(db, "small", *write_generic(tmp_path / "d", n_users=10, n_items=20))
    fs = create_feature_set(db, "small", "f", "synthetic", 1, 8, dtype="float32")
    x = clustered(20, 8, seed=4)[:, None, :]
    write_vectors(db, fs, np.arange(15), x[:15])
    source = nb.feature_source(db, "f")
    first = nb.get_index(db, source)
    assert nb.get_index(db, source) is first and first.size == 15
    write_vectors(db, fs, np.arange(15, 20), x[15:])                 # extraction went on
    second = nb.get_index(db, source)
    assert second is not first and second.size == 20 and second.fingerprint != first.fingerprint
    finish_feature_set(db, fs, "complete", {"items": 20})
    assert nb.get_index(db, source) is not second                  # status change is a change too
    # on disk: an approximate index is written once and read back by a fresh process cache
    cache.clear()
    built = nb.get_index(db, source, kind="hnsw", disk=True)
    files = list(db.side_dir("neighbours").glob("*.faiss"))
    assert len(files) == 1
    cache.clear()
    loads = cache.stats["disk_loads"]
    again = nb.get_index(db, source, kind="hnsw", disk=True)
    assert cache.stats["disk_loads"] == loads + 1 and again.kind == "hnsw"
    np.testing.assert_array_equal(again.search(3, 5)[0], built.search(3, 5)[0])


# --------------------------------------------------------------------------------------------- runs

def test_run_model_restores_best_weights_and_item_vectors(demo):
    from dff_core.eval.evaluate import evaluate

    db = demo["db"]
    for run in (demo["dff"], demo["id"]):
        model = nb.load_run_model(db, run.id)
        result = evaluate(model.model, model.split, "test")
        for name, value in run.result["test"].items():
            assert result.metrics[name] == pytest.approx(value, abs=1e-6), (run.strategy, name)
        with torch.no_grad():
            table = model.model.item_table()[1:].numpy()
        vectors = model.item_vectors()
        assert vectors.shape == (demo["n"], 16)
        np.testing.assert_allclose(vectors, table, atol=1e-6)
        index = nb.get_index(db, nb.run_source(db, run.id))
        want, _ = exact_search(vectors, np.array([4]), 10)
        np.testing.assert_array_equal(index.search(4, 10)[0], want[0])
    weights = nb.load_run_model(db, demo["dff"].id).model.item_encoder.layer_weights()
    stored = demo["dff"].result["layer_weights"]                   # keyed by stored layer (1, 2)
    assert list(stored) == ["1", "2"]
    np.testing.assert_allclose(list(weights.values()), list(stored.values()), atol=1e-6)


def test_training_keeps_run_vectors_that_explore_reads_without_the_model(demo, monkeypatch):
    from jobs.neighbours import models

    db = demo["db"]
    for run in (demo["dff"], demo["id"]):
        kept = models.stored_run_vectors(db, run.id)                  # written by run_training itself
        assert kept is not None and kept.dtype == np.float32 and kept.shape == (demo["n"], 16)
        np.testing.assert_allclose(kept, nb.load_run_model(db, run.id).item_vectors(), atol=1e-6)
        monkeypatch.setattr(cache, "get_run_model", lambda *a: pytest.fail("rebuilt the model"))
        vectors, present = cache.load_vectors(db, nb.run_source(db, run.id))
        np.testing.assert_array_equal(vectors, kept)
        monkeypatch.undo()
    # a checkpoint newer than the kept vectors makes them stale: rebuilt from the model and kept again
    run = demo["id"]
    ckpt = nb.checkpoint_path(db, run.id)
    stat = ckpt.stat()
    import os
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert models.stored_run_vectors(db, run.id) is None
    vectors, _ = cache.load_vectors(db, nb.run_source(db, run.id))
    np.testing.assert_array_equal(models.stored_run_vectors(db, run.id), vectors)
    (ckpt.with_name(models.VECTORS_NAME)).write_bytes(b"not an npz")        # unreadable: ignored, not an error
    assert models.stored_run_vectors(db, run.id) is None


def test_recommendations_exclude_seen_items_and_agree_with_evaluation(demo):
    from dff_core.eval.evaluate import evaluate

    model = nb.get_run_model(demo["db"], demo["dff"].id)
    ranks = evaluate(model.model, model.split, "test").ranks
    hits = 0
    for u in range(0, model.split.num_users, 15):
        rec = model.recommend(model.split.user_ids[u], k=10)
        seen = set(rec.history) - {rec.test_item}
        assert len(rec.items) == 10 and not seen & set(rec.items)
        assert rec.history == model.split.test_input(u).tolist()
        assert all(a >= b for a, b in zip(rec.scores, rec.scores[1:]))
        assert rec.test_rank == ranks[u]
        assert rec.hit == (rec.test_item in rec.items)
        if rec.hit:
            assert rec.items.index(rec.test_item) == rec.test_rank
            hits += 1
    with pytest.raises(ValueError, match="no user"):
        model.recommend("nobody")


# ------------------------------------------------------------------------------ agreement, co-watch

def test_agreement_matrix(demo):
    db = demo["db"]
    a = nb.get_index(db, nb.feature_source(db, "syn", "0"))
    b = nb.get_index(db, nb.feature_source(db, "syn", "1"))
    m = nb.agreement({"L0": a, "L0 again": a, "L1": b}, k=5, queries=40)
    assert list(m.index) == ["L0", "L0 again", "L1"]
    np.testing.assert_allclose(np.diag(m.to_numpy()), 1.0)
    assert m.loc["L0", "L0 again"] == 1.0
    np.testing.assert_allclose(m.to_numpy(), m.to_numpy().T)
    # the layers were drawn independently: little agreement, but computed as overlap@5
    sample = np.random.default_rng(0).choice(np.flatnonzero(a.present & b.present), size=40, replace=False)
    want = nb.overlap_at_k(a.search_many(sample, 5)[0], b.search_many(sample, 5)[0], 5)
    assert m.loc["L0", "L1"] == pytest.approx(want) and m.loc["L0", "L1"] < 0.5


def test_catalog_cooccurrence_and_search(demo):
    catalog = nb.load_catalog(demo["db"], "demo")
    split = catalog.split
    item = int(np.bincount(np.concatenate(split.train)).argmax())
    histories = [set(s.tolist()) for s in split.train]
    for query in (item, 0, int(np.bincount(np.concatenate(split.train)).argmin())):
        holders = [s for s in histories if query in s]
        brute = {o: sum(o in s for s in holders) for o in set().union(*holders) - {query}} if holders else {}
        assert catalog.cooccurrence(query) == brute
    assert len(catalog.cooccurrence(item)) > 10
    assert catalog.items["popularity"].sum() == sum(len(s) + 2 for s in split.train)
    assert sum(catalog.media(i) is not None for i in range(len(catalog.items))) > 0
    first = catalog.items.iloc[5]
    assert catalog.search(first["item_id"]).iloc[0]["item_id"] == first["item_id"]
    word = first["title"].split()[0]
    assert all(word.lower() in t.lower() or word.lower() in i.lower()
               for t, i in zip(catalog.search(word)["title"], catalog.search(word)["item_id"]))
    with pytest.raises(ValueError, match="no item 'nope'"):
        catalog.index_of("nope")


# ---------------------------------------------------------------------------------------------- CLI

def run_cli(capsys, db, *args) -> tuple[int, str, str]:
    from cli import main

    code = main(["--db", str(db.path), "neighbours", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_shape_and_errors(demo, capsys):
    db = demo["db"]
    catalog = nb.load_catalog(db, "demo")
    query = catalog.items["item_id"].iloc[3]
    code, out, _ = run_cli(capsys, db, "--features", "syn", "--layer", "2", "--item", query, "--k", "5", "--json")
    assert code == 0
    rows = json.loads(out.strip().splitlines()[-1])
    assert len(rows) == 5 and all(set(r) == {"item_id", "score"} for r in rows)
    assert query not in [r["item_id"] for r in rows]
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    want, _ = exact_search(demo["feats"][:, 2], np.array([3]), 5, present=np.arange(demo["n"]) < demo["n"] - 1)
    assert [r["item_id"] for r in rows] == catalog.items["item_id"].to_numpy()[want[0]].tolist()

    code, out, _ = run_cli(capsys, db, "--run", str(demo["dff"].id), "--item", query, "--json")
    assert code == 0 and len(json.loads(out)) == 10
    code, out, _ = run_cli(capsys, db, "--features", "syn", "--item", query)
    assert code == 0 and "exact index over" in out and len(out.strip().splitlines()) == 13  # + the header
    assert "score: cosine of centred vectors" in out and out.splitlines()[2].split() == ["rank", "item", "score",
                                                                                         "title"]

    for args, message in (
            (("--features", "syn", "--item", "nope"), "no item 'nope'"),
            (("--features", "syn", "--layer", "7", "--item", query), "outside 0..2"),
            (("--features", "nosuch", "--item", query), "no feature set 'nosuch'"),
            (("--features", "syn", "--item", catalog.items["item_id"].iloc[-1]), "has no vector"),
            (("--run", "999", "--item", query), "no run with id 999"),
            (("--item", query), "--features F"),
            (("--features", "syn", "--k", "0", "--item", query), "k must be at least 1")):
        code, _, err = run_cli(capsys, db, *args)
        assert code == 2 and message in err, (args, err)
        assert "Traceback" not in err


def test_thumbnail_is_small_and_says_why_a_cover_does_not_decode(tmp_path):
    from io import BytesIO

    from PIL import Image

    cover = tmp_path / "c.jpg"
    Image.new("RGB", (640, 360), (200, 30, 30)).save(cover, quality=95)
    data, problem = nb.thumbnail(str(cover), 96)
    small = Image.open(BytesIO(data))
    assert problem is None and small.format == "JPEG" and small.size == (96, 54)
    assert abs(small.getpixel((48, 27))[0] - 200) < 12 and len(data) < cover.stat().st_size
    tiny = tmp_path / "t.png"
    Image.new("RGB", (40, 20)).save(tiny)
    assert Image.open(BytesIO(nb.thumbnail(str(tiny), 96)[0])).size == (40, 20)   # never enlarged
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(cover.read_bytes()[:300])
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert nb.thumbnail(str(truncated), 96)[0] is None and "cannot be decoded" in nb.thumbnail(str(truncated), 96)[1]
    assert nb.thumbnail(str(bad), 96) == (None, "not an image file PIL can read (corrupt or wrong format)")
