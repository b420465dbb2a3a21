"""Parquet-backed feature sets: same tensors as the table kind, resumable writes, layer-pruned shards,
deletion, and training / CLI use like any other feature set."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_helpers import write_generic
from jobs.datasets import import_generic
from storage import NotFound, parquet_features
from storage.removal import delete_dataset
from storage.features import (create_feature_set, delete_feature_set, failures, finish_feature_set,
                              get_feature_set, read_features, record_failure, stored_items, write_vectors)


@pytest.fixture
def dataset(db, tmp_path):
    inter, items = write_generic(tmp_path / "d", n_users=12, n_items=20, seq=6)
    return import_generic(db, "d", inter, items)


def _shards(db, fs):
    return parquet_features.shards(parquet_features.folder(db.path, fs.location))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_parquet_reads_what_the_table_kind_reads(db, dataset, dtype):
    n = dataset.stats["items"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 5, 8)).astype(np.float32)
    order = rng.permutation(n - 2)  # two items never written: zeros and False in the mask
    sets = {kind: create_feature_set(db, "d", f"f-{kind}", "test", 5, 8, dtype=dtype, storage=kind)
            for kind in ("duckdb", "parquet")}
    for fs in sets.values():
        for chunk in np.array_split(order, 4):
            write_vectors(db, fs, chunk, x[chunk])
    pq_fs = sets["parquet"]
    assert pq_fs.storage == "parquet" and get_feature_set(db, pq_fs.id).storage == "parquet"
    folder = db.path.parent / "features" / db.path.stem / str(pq_fs.id)
    assert pq_fs.location == f"features/{db.path.stem}/{pq_fs.id}" and len(_shards(db, pq_fs)) == 4
    assert all(p.parent == folder for p in _shards(db, pq_fs))
    for layers in (None, [3, 1], [4]):
        t, t_mask = read_features(db, sets["duckdb"], layers=layers)
        p, p_mask = read_features(db, pq_fs, layers=layers)
        assert p.shape == t.shape and p.dtype == np.float32
        np.testing.assert_array_equal(p_mask, t_mask)
        np.testing.assert_allclose(p, t, rtol=0, atol=0)
    full, mask = read_features(db, pq_fs)
    assert mask.sum() == n - 2 and not mask[n - 2:].any()
    tol = 2e-3 if dtype == "float16" else 0
    np.testing.assert_allclose(full[order], x[order], atol=tol * 4, rtol=tol)
    assert (full[~mask] == 0).all()
    half, _ = read_features(db, pq_fs, layers=[2], dtype=np.float16)
    assert half.dtype == np.float16 and half.shape == (n, 1, 8)
    assert stored_items(db, pq_fs) == {int(i) for i in order}


def test_resume_rewrite_failures_and_compaction(db, dataset):
    n = dataset.stats["items"]
    fs = create_feature_set(db, "d", "f", "test", 3, 4, storage="parquet")
    assert stored_items(db, fs) == set()
    out, present = read_features(db, fs)  # no shard yet: zeros, nothing present
    assert out.shape == (n, 3, 4) and not present.any()
    write_vectors(db, fs, [0, 2], np.ones((2, 3, 4)))
    record_failure(db, fs, 1, "cannot decode videos/1.mp4")
    # a resumed run skips stored items and only writes what is missing
    todo = [i for i in range(4) if i not in stored_items(db, fs)]
    assert todo == [1, 3]
    write_vectors(db, fs, todo, np.full((2, 3, 4), 3.0))
    # a retried item replaces its vectors (the newest shard wins) and clears its failure
    write_vectors(db, fs, [2], np.full((1, 3, 4), 2.0))
    out, present = read_features(db, fs)
    assert failures(db, fs) == {} and present[:4].all() and not present[4:].any()
    assert (out[0] == 1).all() and (out[1] == 3).all() and (out[2] == 2).all() and (out[3] == 3).all()
    assert len(_shards(db, fs)) == 3
    finish_feature_set(db, fs, "partial", {"items": 4})
    fs = get_feature_set(db, fs.id)
    assert fs.stats["shards"] == 1 and fs.stats["shard_bytes"] > 0 and len(_shards(db, fs)) == 1
    # compaction dropped the superseded rows and kept the newest
    table = pq.read_table(_shards(db, fs)[0])
    assert table.num_rows == 4 * 3
    again, present2 = read_features(db, fs)
    np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(present2, present)


def test_shards_are_sorted_by_layer_so_reads_prune_row_groups(db, dataset):
    fs = create_feature_set(db, "d", "f", "test", 6, 4, storage="parquet")
    for s in range(0, 20, 5):
        write_vectors(db, fs, list(range(s, s + 5))[::-1], np.random.default_rng(s).normal(size=(5, 6, 4)))
    finish_feature_set(db, fs, "complete")
    (shard,) = _shards(db, fs)
    meta = pq.ParquetFile(shard).metadata
    layer_col = meta.schema.names.index("layer")
    ranges = [(meta.row_group(g).column(layer_col).statistics.min, meta.row_group(g).column(layer_col).statistics.max)
              for g in range(meta.num_row_groups)]
    assert ranges == [(l, l) for l in range(6)]  # one row group per layer: a layer query reads one of six
    items = pq.read_table(shard, columns=["item"]).column("item").to_numpy()
    assert items.tolist() == list(range(20)) * 6


def test_delete_removes_shards_and_stale_folders_are_cleared(db, dataset, tmp_path):
    fs = create_feature_set(db, "d", "f", "test", 2, 3, storage="parquet")
    write_vectors(db, fs, [0, 1], np.ones((2, 2, 3)))
    folder = parquet_features.folder(db.path, fs.location)
    assert folder.is_dir() and _shards(db, fs)
    delete_feature_set(db, fs)
    assert not folder.exists()
    with pytest.raises(NotFound):
        get_feature_set(db, "f")
    # a new set whose folder is a leftover (from a deleted database file of the same name) starts empty
    stale = parquet_features.folder(db.path, parquet_features.relative_location(db.path, fs.id + 1))
    stale.mkdir(parents=True)
    (stale / "part-00000000000000000001-deadbeef.parquet").write_bytes(b"stale")
    fs2 = create_feature_set(db, "d", "g", "test", 2, 3, storage="parquet")
    assert parquet_features.folder(db.path, fs2.location) == stale and not list(stale.iterdir())
    assert stored_items(db, fs2) == set()
    # deleting the dataset removes its sets' shards too
    write_vectors(db, fs2, [0], np.ones((1, 2, 3)))
    delete_dataset(db, "d")
    assert not parquet_features.folder(db.path, fs2.location).exists()


def test_storage_kind_is_kept_on_resume(db, dataset):
    create_feature_set(db, "d", "f", "test", 2, 3, storage="parquet")
    assert create_feature_set(db, "d", "f", "test", 2, 3, storage="parquet", exist_ok=True).storage == "parquet"
    with pytest.raises(ValueError, match="--storage parquet"):
        create_feature_set(db, "d", "f", "test", 2, 3, storage="duckdb", exist_ok=True)
    with pytest.raises(ValueError, match="storage must be one of"):
        create_feature_set(db, "d", "h", "test", 2, 3, storage="s3")


def test_training_from_parquet_equals_training_from_the_table(db, tmp_path):
    """A Parquet set trains like any other: same tensor in, same metrics out (same seed)."""
    import cli
    from jobs.workflows import run_training
    from test_train import cluster_data

    split, feats = cluster_data(seed=3, n_clusters=4, per_cluster=8, users=40, seq_len=6, layers=3, dim=8)
    folder = tmp_path / "c"
    folder.mkdir()
    rows = ["user_id,item_id,timestamp"]
    seqs = [list(s) + [v, t] for s, v, t in zip(split.train, split.val_target, split.test_target)]
    for u, seq in enumerate(seqs):
        rows += [f"u{u},i{item},{k}" for k, item in enumerate(seq)]
    (folder / "inter.csv").write_text("\n".join(rows) + "\n")
    (folder / "items.csv").write_text("item_id,title\n" + "".join(f"i{i},t{i}\n" for i in range(len(feats))))
    ds = import_generic(db, "c", folder / "inter.csv", folder / "items.csv")
    from storage.datasets import load_items
    ids = load_items(db, ds.id)["item_id"].tolist()
    np.savez(folder / "f.npz", item_ids=np.asarray(ids, dtype=str),
             features=feats[[int(i[1:]) for i in ids]])
    assert cli.main(["--db", str(db.path), "import-features", "fp", "--dataset", "c", "--npz",
                     str(folder / "f.npz"), "--storage", "parquet"]) == 0
    assert cli.main(["--db", str(db.path), "import-features", "ft", "--dataset", "c", "--npz",
                     str(folder / "f.npz")]) == 0
    assert get_feature_set(db, "fp").storage == "parquet" and get_feature_set(db, "ft").storage == "duckdb"
    settings = dict(epochs=2, batch_size=16, hidden=16, blocks=1, max_len=8, patience=10, num_threads=1)
    runs = {name: run_training(db, "c", "dff", features=name, layers="1-2", settings=settings, seed=5)
            for name in ("fp", "ft")}
    assert all(r.status == "done" for r in runs.values())
    for split_name in ("val", "test"):
        for metric, value in runs["ft"].result[split_name].items():
            assert runs["fp"].result[split_name][metric] == pytest.approx(value, abs=1e-9), (split_name, metric)
    assert runs["fp"].result["layer_weights"].keys() == {"1", "2"}
    # and it explores like any other: the same nearest neighbours as the table copy
    from jobs.neighbours import feature_source, neighbours_of

    near = {name: neighbours_of(db, feature_source(db, name, "1-2", dataset="c"), ids[0], k=5) for name in ("fp", "ft")}
    assert len(near["fp"]) == 5
    assert [n["item_id"] for n in near["fp"]] == [n["item_id"] for n in near["ft"]]
    np.testing.assert_allclose([n["score"] for n in near["fp"]], [n["score"] for n in near["ft"]], atol=1e-6)


def test_shards_describe_their_vectors_and_foreign_shards_are_refused(db, dataset):
    fs = create_feature_set(db, "d", "f", "test", 2, 3, storage="parquet")
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    write_vectors(db, fs, [1, 0], x)
    (shard,) = _shards(db, fs)
    schema = pq.read_schema(shard)
    assert schema.metadata[b"dff.vec"] == b"float16 little-endian x 3"
    raw = pq.read_table(shard)
    row = raw.slice(0, 1).to_pylist()[0]  # layer 0 of item 0 (rows sorted by layer, item)
    assert (row["item"], row["layer"]) == (0, 0)
    np.testing.assert_array_equal(np.frombuffer(row["vec"], dtype="<f2"), x[1, 0])
    other = create_feature_set(db, "d", "g", "test", 2, 4, storage="parquet")  # another dim
    shard.rename(parquet_features.folder(db.path, other.location) / shard.name)
    with pytest.raises(ValueError, match="does not belong to this set"):
        read_features(db, other)
