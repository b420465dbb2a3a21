"""import-features: honest storage type and one clear line for every broken file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from data_helpers import write_generic
import cli
from jobs.datasets import import_generic
from storage.datasets import load_items
from storage.features import choose_dtype, get_feature_set, list_feature_sets, read_features


@pytest.fixture
def small(db, tmp_path):
    inter, items = write_generic(tmp_path / "d", n_users=12, n_items=20, seq=6)
    ds = import_generic(db, "small", inter, items)
    return db, np.asarray(load_items(db, ds.id)["item_id"].tolist(), dtype=str)


def _run(db, capsys, *args):
    code = cli.main(["--db", str(db.path), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_choose_dtype_keeps_float16_only_when_values_survive():
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(50, 3, 16))
    assert choose_dtype(normal)[0] == "float16"
    assert choose_dtype(normal * 1e-8)[0] == "float32"          # float16 flushes these to zero
    assert choose_dtype(normal * 1e-6)[0] == "float32"          # subnormal: ~10 % relative error
    assert choose_dtype(normal * 1e5)[0] == "float32"           # overflow
    assert choose_dtype(np.zeros((4, 2, 8)))[0] == "float16"     # zeros stay zeros


def test_tiny_features_are_stored_as_float32_not_zeros(small, tmp_path, capsys):
    db, ids = small
    feats = np.random.default_rng(1).normal(size=(len(ids), 2, 8)) * 1e-8     # float64 around 1e-8
    np.savez(tmp_path / "f.npz", item_ids=ids, features=feats)
    code, out, err = _run(db, capsys, "import-features", "tiny", "--dataset", "small", "--npz", str(tmp_path / "f.npz"))
    assert code == 0, err
    assert "float32 (float16 would change some vectors by 100.0%" in out
    fs = get_feature_set(db, "tiny", dataset="small")
    assert fs.dtype == "float32" and "underflow" in fs.stats["dtype_reason"]
    stored, present = read_features(db, fs)
    assert present.all()
    np.testing.assert_allclose(stored, feats.astype(np.float32), rtol=1e-6)
    code, out, _ = _run(db, capsys, "features")
    assert "float32" in out.splitlines()[0]


def test_normal_features_stay_float16_and_say_so(small, tmp_path, capsys):
    db, ids = small
    np.savez(tmp_path / "f.npz", item_ids=ids, features=np.random.default_rng(2).normal(size=(len(ids), 2, 8)))
    code, out, _ = _run(db, capsys, "import-features", "ok", "--dataset", "small", "--npz", str(tmp_path / "f.npz"))
    assert code == 0 and ", float16 (float16 keeps every vector within" in out
    assert get_feature_set(db, "ok", dataset="small").dtype == "float16"


def _write_bad(path, case: str, ids: np.ndarray) -> None:
    if case == "npy":
        np.save(path.with_suffix(".npy"), np.zeros((3, 4)))
        path.with_suffix(".npy").rename(path)
    elif case == "empty":
        np.savez(path, item_ids=np.array([], dtype=str), features=np.zeros((0, 2, 8)))
    elif case == "zero-dim":
        np.savez(path, item_ids=np.array("i1"), features=np.array(1.0))
    elif case == "zero-width":
        np.savez(path, item_ids=ids, features=np.zeros((len(ids), 2, 0)))
    elif case == "text":
        path.write_text("item_id,f0\ni1,0.5\n")
    elif case == "duplicate":
        np.savez(path, item_ids=np.array([ids[0], ids[1], ids[0]]), features=np.ones((3, 2, 8)))
    elif case == "none-match":
        np.savez(path, item_ids=np.array(["x1", "x2"]), features=np.ones((2, 2, 8)))


@pytest.mark.parametrize("case, message", [
    ("npy", "f.npz: a single .npy array, not an .npz archive"),
    ("empty", "f.npz: features are empty (shape [0, 2, 8])"),
    ("zero-dim", "f.npz: item_ids must be a list [n] and features [n, layers, dim]; got shapes [] and []"),
    ("zero-width", "f.npz: features are empty"),
    ("text", "f.npz: not an .npz archive (the file is text)"),
    ("duplicate", "f.npz: item id i0 appears 2 times"),
    ("none-match", "f.npz: all 2 of its item ids are not in dataset 'small'"),
])
def test_broken_feature_files_are_one_line_exit_2(small, tmp_path, capsys, case, message):
    db, ids = small
    ids = np.array(sorted(ids, key=lambda s: int(s[1:])))
    _write_bad(tmp_path / "f.npz", case, ids)
    code, out, err = _run(db, capsys, "import-features", "bad", "--dataset", "small", "--npz", str(tmp_path / "f.npz"))
    assert code == 2
    assert err.strip().splitlines() == [err.strip()] and err.startswith("error: " + message), err
    assert "np.str_" not in err and "Traceback" not in err
    assert list_feature_sets(db, "small") == []


def test_features_for_items_outside_the_dataset_are_skipped_with_a_count(small, tmp_path, capsys):
    db, ids = small
    extra = np.array([f"gone{i}" for i in range(7)])
    all_ids = np.concatenate([ids, extra])
    feats = np.random.default_rng(3).normal(size=(len(all_ids), 2, 8)).astype(np.float32)
    np.savez(tmp_path / "f.npz", item_ids=all_ids[::-1], features=feats[::-1])
    code, out, err = _run(db, capsys, "import-features", "wide", "--dataset", "small", "--npz", str(tmp_path / "f.npz"))
    assert code == 0
    assert "warning: skipped 7 item(s)" in err and "not in dataset 'small'" in err
    fs = get_feature_set(db, "wide", dataset="small")
    assert fs.status == "complete" and fs.stats["skipped_unknown_items"] == 7 and fs.stats["items"] == len(ids)
    stored, present = read_features(db, fs)
    assert present.all()
    np.testing.assert_allclose(stored, feats[: len(ids)], atol=1e-2)
    code, out, _ = _run(db, capsys, "features", "--json")
    assert json.loads(out)[0]["stats"]["skipped_unknown_items"] == 7
