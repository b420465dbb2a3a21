"""Names that cannot be turned against users: ids passed by code are never read as names, and one name rule
(``storage.names``) for datasets, feature sets and studies, refused in one line before anything is stored."""
from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from data_helpers import write_generic
from jobs.datasets import import_generic, import_uploads
from jobs.workflows import import_features_npz
from storage.datasets import get_dataset, list_datasets, load_items
from storage.features import get_feature_set, list_feature_sets
from storage.names import check_name


def _npz(path, ids, layers=2, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(path, item_ids=np.asarray(ids), features=rng.normal(size=(len(ids), layers, dim)).astype(np.float32))
    return path


@pytest.fixture
def two(db, tmp_path):
    """Dataset ``demo`` (id 1) and a second dataset renamed to ``1`` as a database from before the rule holds."""
    inter, items = write_generic(tmp_path / "a")
    first = import_generic(db, "demo", inter, items)
    inter2, items2 = write_generic(tmp_path / "b", n_items=30)
    second = import_generic(db, "other", inter2, items2)
    with db.session() as conn:
        conn.execute(sa.text("UPDATE datasets SET name = :n WHERE id = :i"), {"n": str(first.id), "i": second.id})
    return first, second


def test_a_dataset_named_like_an_id_does_not_take_over_that_dataset(db, tmp_path, two):
    first, second = two
    ids = load_items(db, first.id)["item_id"].astype(str).tolist()
    fs = import_features_npz(db, "f", "demo", _npz(tmp_path / "f.npz", ids))
    assert fs.dataset_id == first.id
    assert [s.name for s in list_feature_sets(db, "demo")] == ["f"]
    assert list_feature_sets(db, second.id) == []
    assert fs.status == "complete" and fs.stats["items"] == len(ids)
    # an int is an id, a typed name is a name
    assert get_dataset(db, first.id).name == "demo"
    assert get_dataset(db, str(first.id)).id == second.id
    assert get_feature_set(db, fs.id).name == "f"


def test_a_feature_set_named_like_an_id_does_not_stand_in_for_it(db, tmp_path, two):
    first, _ = two
    ids = load_items(db, first.id)["item_id"].astype(str).tolist()
    a = import_features_npz(db, "a", "demo", _npz(tmp_path / "a.npz", ids))
    b = import_features_npz(db, "b", "demo", _npz(tmp_path / "b.npz", ids, layers=3))
    with db.session() as conn:
        conn.execute(sa.text("UPDATE feature_sets SET name = :n WHERE id = :i"), {"n": str(a.id), "i": b.id})
    assert get_feature_set(db, a.id).num_layers == 2


HOSTILE = ["x\ny", "/", "..", "../../etc", "a/b", "", "   ", "a" * 100_000, "evil\u202etxt.exe", "12", "zero\u200bwidth",
           "tab\tname", "nbsp\u00a0name"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_dataset_names_are_refused_in_one_line(db, tmp_path, name):
    inter, items = write_generic(tmp_path / "d")
    with pytest.raises(ValueError) as err:
        import_generic(db, name, inter, items)
    message = str(err.value)
    assert message.startswith("dataset name ") and "refused" in message and "\n" not in message
    assert len(message) < 400
    assert list_datasets(db) == []
    with pytest.raises(ValueError, match="refused"):
        import_uploads(db, name, ("i.csv", inter.read_bytes()), ("t.csv", items.read_bytes()))
    assert not (db.path.parent / "uploads").exists() or not any((db.path.parent / "uploads").iterdir())


def test_spaces_at_either_end_are_trimmed_so_a_lookalike_collides(db, tmp_path):
    inter, items = write_generic(tmp_path / "d")
    import_generic(db, "demo", inter, items)
    for name in ("demo ", " demo"):
        with pytest.raises(ValueError, match="already exists"):
            import_generic(db, name, inter, items)
    assert [d.name for d in list_datasets(db)] == ["demo"]
    assert import_generic(db, " mine ", inter, items).name == "mine"


@pytest.mark.parametrize("name", ["", "   ", "a" * 100_000, "rtl\u202eset", "7", "x\ny"])
def test_hostile_feature_set_names_are_refused(db, tmp_path, name):
    inter, items = write_generic(tmp_path / "d")
    ds = import_generic(db, "demo", inter, items)
    ids = load_items(db, ds.id)["item_id"].astype(str).tolist()
    with pytest.raises(ValueError, match="feature set name .* refused"):
        import_features_npz(db, name, "demo", _npz(tmp_path / "f.npz", ids))
    assert list_feature_sets(db) == []


@pytest.mark.parametrize("name", ["a/b", "x\ny", "99", "\u202estudy"])
def test_hostile_study_names_are_refused_before_queueing(db, tmp_path, name):
    from jobs.submit import enqueue_sweep, enqueue_train
    from storage.queue import list_jobs

    inter, items = write_generic(tmp_path / "d")
    import_generic(db, "demo", inter, items)
    with pytest.raises(ValueError, match="study name .* refused"):
        enqueue_train(db, "demo", "id", None, None, {"epochs": 1}, seed=1, study=name)
    with pytest.raises(ValueError, match="study name .* refused"):
        enqueue_sweep(db, "demo", None, ["id"], ["all"], [1], name, {"epochs": 1})
    assert list_jobs(db) == []


def test_good_names_pass_unchanged():
    for name in ("demo", "smollm2-titles", "my set v1.2", "Übersicht", "12a", "a" * 100):
        assert check_name("dataset", name) == name
