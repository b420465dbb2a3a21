"""Dataset import: counts, preprocessing, leave-one-out roles, validation errors, all-or-nothing."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_helpers import write_generic
from dff_core.data.importers import DataError, Preprocessing, prepare, read_generic
from jobs.datasets import import_generic, import_microlens
from storage.datasets import list_datasets, load_items
from jobs.reads import load_split


def test_generic_import_counts_roles_and_split(db, tmp_path):
    inter, items = write_generic(tmp_path / "d", n_users=12, n_items=20, seq=6)
    ds = import_generic(db, "small", inter, items)
    assert ds.stats["users"] == 12 and ds.stats["interactions"] == 72
    assert ds.stats["items"] == len(set((u * 3 + k * 7) % 20 for u in range(12) for k in range(6)))
    split = load_split(db, ds.id)
    assert split.num_users == 12
    assert all(len(t) == 4 for t in split.train)
    # user u0 watched i0, i7, i14, i1, i8, i15 in time order: val = i8, test = i15
    items_df = load_items(db, ds.id)
    name = dict(zip(items_df["idx"], items_df["item_id"]))
    u0 = split.user_ids.index("u0")
    assert [name[i] for i in split.train[u0]] == ["i0", "i7", "i14", "i1"]
    assert name[split.val_target[u0]] == "i8" and name[split.test_target[u0]] == "i15"
    # free metadata columns are kept, numbers stay numbers where a column is numeric
    assert '"category": "cat0"' in items_df.loc[items_df["item_id"] == "i0", "meta"].iloc[0]


def test_timestamps_order_sequences_not_file_order(db, tmp_path):
    d = tmp_path / "ts"
    d.mkdir()
    (d / "items.csv").write_text("item_id,title\n" + "".join(f"{i},t{i}\n" for i in range(6)))
    # written out of time order: the importer must sort by timestamp
    (d / "inter.csv").write_text("user_id,item_id,timestamp\n" + "".join(
        f"a,{i},{100 - i}\n" for i in range(6)))
    ds = import_generic(db, "ts", d / "inter.csv", d / "items.csv")
    split = load_split(db, ds.id)
    items = load_items(db, ds.id)
    ids = dict(zip(items["idx"], items["item_id"]))
    assert ids[split.test_target[0]] == "0" and ids[split.val_target[0]] == "1"
    assert [ids[i] for i in split.train[0]] == ["5", "4", "3", "2"]


def test_parquet_interactions(db, tmp_path):
    inter, items = write_generic(tmp_path / "p")
    pd.read_csv(inter).to_parquet(tmp_path / "p" / "inter.parquet")
    ds = import_generic(db, "pq", tmp_path / "p" / "inter.parquet", items)
    assert ds.stats["interactions"] == 72


def test_preprocessing_min_interactions_and_last_n(tmp_path):
    d = tmp_path / "pre"
    d.mkdir()
    (d / "items.csv").write_text("item_id,title\n" + "".join(f"{i},t{i}\n" for i in range(30)))
    rows = ["user_id,item_id"] + [f"long,{i}" for i in range(20)] + [f"short,{i}" for i in range(4)]
    (d / "inter.csv").write_text("\n".join(rows) + "\n")
    raw = read_generic(d / "inter.csv", d / "items.csv")
    prepared = prepare(raw, Preprocessing(min_interactions=5, max_items_per_user=8))
    assert prepared.stats["users"] == 1
    assert prepared.stats["interactions"] == 8
    kept = prepared.items.set_index("idx").loc[prepared.interactions["item_idx"], "item_id"].tolist()
    assert kept == [str(i) for i in range(12, 20)]  # the LAST 8 items
    assert any("fewer than 5" in w for w in prepared.warnings)
    assert prepared.interactions["role"].tolist()[-2:] == ["val", "test"]


def test_top_items_keeps_the_most_interacted_items_then_filters_users(tmp_path):
    d = tmp_path / "top"
    d.mkdir()
    (d / "items.csv").write_text("item_id,title\n" + "".join(f"{i},t{i}\n" for i in range(6)))
    # interactions per item: 0 x5, 1 x4, 2 x4, 3 x3, 4 x2, 5 x2
    seqs = {"a": [0, 1, 2, 3, 4], "b": [0, 1, 2, 3, 5], "c": [0, 1, 2, 0, 1], "d": [0, 5, 4, 3, 2]}
    rows = ["user_id,item_id,timestamp"] + [f"{u},{i},{k}" for u, s in seqs.items() for k, i in enumerate(s)]
    (d / "inter.csv").write_text("\n".join(rows) + "\n")
    prepared = prepare(read_generic(d / "inter.csv", d / "items.csv"), Preprocessing(min_interactions=3, top_items=3))
    items = prepared.items.set_index("idx")["item_id"]
    users = prepared.users.set_index("idx")["user_id"]
    kept = {users[u]: items[g["item_idx"]].tolist() for u, g in prepared.interactions.groupby("user_idx")}
    # items 3-5 go first; then d has only 2 interactions left and is dropped
    assert kept == {"a": ["0", "1", "2"], "b": ["0", "1", "2"], "c": ["0", "1", "2", "0", "1"]}
    assert sorted(items) == ["0", "1", "2"] and prepared.stats["interactions"] == 11
    assert any("kept the 3 most-interacted of 6 items" in w for w in prepared.warnings)
    assert prepared.params["top_items"] == 3
    with pytest.raises(DataError):
        Preprocessing(top_items=0)


@pytest.mark.parametrize("case, message", [
    ("missing_file", "interactions file not found"),
    ("missing_column", "missing column 'item_id'"),
    ("unknown_item", "line 4: item 'nope' is not in the items"),
    ("duplicate_item", "item id 'i1' appears more than once (lines 3, 4)"),
    ("malformed", "line 3"),
    ("bad_timestamp", "line 3: timestamp 'yesterday' is not a number"),
    ("empty_user", "line 2: empty user_id"),
])
def test_validation_errors_name_file_and_line(db, tmp_path, case, message):
    inter, items = write_generic(tmp_path / "v")
    if case == "missing_file":
        inter = tmp_path / "v" / "absent.csv"
    elif case == "missing_column":
        inter.write_text("user_id,thing\nu1,i1\n")
    elif case == "unknown_item":
        inter.write_text("user_id,item_id\nu1,i1\nu1,i2\nu1,nope\n")
    elif case == "duplicate_item":
        items.write_text("item_id,title\ni0,a\ni1,b\ni1,c\n")
    elif case == "malformed":
        items.write_text('item_id,title\ni0,a\ni1,"b,c",d,e,f\n')
    elif case == "bad_timestamp":
        inter.write_text("user_id,item_id,timestamp\nu1,i1,5\nu1,i2,yesterday\n")
    elif case == "empty_user":
        inter.write_text("user_id,item_id\n,i1\n")
    with pytest.raises(DataError) as err:
        import_generic(db, "bad", inter, items)
    assert message in str(err.value)
    assert list_datasets(db) == []  # nothing half-stored


def test_missing_media_is_a_warning_and_the_item_stays(db, tmp_path):
    inter, items = write_generic(tmp_path / "m", media=True)
    (tmp_path / "m" / "videos").mkdir()
    (tmp_path / "m" / "videos" / "i0.mp4").write_bytes(b"not checked at import")
    ds = import_generic(db, "media", inter, items)
    assert any("video file(s) are missing" in w for w in ds.warnings)
    stored = load_items(db, ds.id).set_index("item_id")
    assert stored.loc["i0", "video_path"] == "videos/i0.mp4"
    assert stored.loc["i2", "video_path"] is None or pd.isna(stored.loc["i2", "video_path"])
    assert ds.stats["videos"] == 1


def test_failed_import_leaves_nothing_and_duplicate_name_refused(db, tmp_path, monkeypatch):
    inter, items = write_generic(tmp_path / "a")
    import_generic(db, "first", inter, items)
    with pytest.raises(ValueError, match="already exists"):
        import_generic(db, "first", inter, items)

    # a failure in the middle of the storing transaction rolls everything back
    import storage.datasets as sd
    real = sd._bulk_insert

    def flaky(raw, table, frame, dataset_id):
        if table == "interactions":  # items and users went in already
            raise RuntimeError("disk full")
        return real(raw, table, frame, dataset_id)

    monkeypatch.setattr(sd, "_bulk_insert", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        import_generic(db, "second", inter, items)
    monkeypatch.undo()
    assert [d.name for d in list_datasets(db)] == ["first"]
    with db.session() as conn:
        raw = db.raw(conn)
        assert raw.execute("SELECT count(DISTINCT dataset_id) FROM items").fetchall()[0][0] == 1
        assert raw.execute("SELECT count(*) FROM users").fetchall()[0][0] == 12


def test_microlens_bundle_counts(db, microlens_dir):
    ds = import_microlens(db, "microlens", microlens_dir)
    assert (ds.stats["users"], ds.stats["items"], ds.stats["interactions"]) == (50_000, 19_220, 359_708)
    split = load_split(db, ds.id)
    assert sum(len(t) for t in split.train) == 259_708  # as in the bundle's popularity baseline
    assert ds.stats["videos"] == 3 and ds.stats["covers"] == 10
    items = load_items(db, ds.id).set_index("item_id")
    assert items.loc["1002", "video_path"] == "videos/1002.mp4"
    assert '"category": "Anime"' in items.loc["1", "meta"]
    counts = split.train_item_counts()
    assert counts.sum() == 259_708 and (counts == 0).sum() == 730


def test_microlens_malformed_pairs_line(db, tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    (d / "x_pairs.tsv").write_text("1\t1 2 3 4 5\r\n2 1 2 3\r\n")
    (d / "x_titles.csv").write_text("item,title\n1,a\n2,b\n3,c\n4,d\n5,e\n")
    with pytest.raises(DataError, match=r"x_pairs.tsv line 2: expected 'user<TAB>item item \.\.\.'"):
        import_microlens(db, "ml", d)
    (d / "x_pairs.tsv").write_text("1\t1 2 3 4 9\r\n")
    with pytest.raises(DataError, match="x_pairs.tsv line 1: item '9' is not in the items/titles file"):
        import_microlens(db, "ml", d)
    assert list_datasets(db) == []


def test_split_targets_are_never_in_training(db, tmp_path):
    inter, items = write_generic(tmp_path / "s", n_users=30, n_items=40, seq=7)
    ds = import_generic(db, "s", inter, items)
    split = load_split(db, ds.id)
    for u in range(split.num_users):
        assert split.test_target[u] not in split.train[u]
        assert np.array_equal(split.test_input(u)[:-1], split.train[u])
