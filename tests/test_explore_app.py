"""Explore page through AppTest: empty states, neighbours side by side, a user's recommendations, agreement."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_explore() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("DFF_WORKER", "0")


@pytest.fixture(scope="module")
def explored(tmp_path_factory):
    """A small demo dataset with a 4-layer feature set (layers 0 and 1 identical) and two finished runs."""
    from jobs.datasets import import_generic
    from dff_core.demo import build_demo
    from jobs.workflows import run_training
    from storage import Database
    from storage.features import create_feature_set, finish_feature_set, write_vectors

    root = tmp_path_factory.mktemp("explore")
    files = build_demo(root / "demo", n_items=30, n_users=150)
    db = Database(root / "explore.duckdb")
    ds = import_generic(db, "demo", files.interactions_csv, files.items_csv, files.root, source="demo")
    n = ds.stats["items"]
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n, 4, 12)).astype(np.float32)
    feats[:, 1] = feats[:, 0]
    fs = create_feature_set(db, "demo", "syn", "synthetic", 4, 12, dtype="float32")
    write_vectors(db, fs, np.arange(n), feats)
    finish_feature_set(db, fs, "complete", {"items": n})
    settings = {"epochs": 1, "hidden": 16, "batch_size": 128}
    runs = [run_training(db, "demo", "id", settings=settings, seed=1),
            run_training(db, "demo", "gate", features="syn", layers="2", settings=settings, seed=1)]
    return db, runs


def test_explore_empty_states(tmp_path, monkeypatch):
    from jobs.datasets import import_generic
    from storage import Database

    from data_helpers import write_generic

    monkeypatch.setenv("DFF_DB", str(tmp_path / "empty.duckdb"))
    at = open_explore()
    assert any("No datasets yet" in i.value for i in at.info)
    db = Database(tmp_path / "empty.duckdb")
    import_generic(db, "small", *write_generic(tmp_path / "d"))
    at = open_explore()
    assert any("Nothing to explore" in i.value and "Extract page" in i.value for i in at.info)


def test_explore_neighbours_recommendations_and_agreement(explored, monkeypatch):
    from jobs import neighbours as nb

    db, runs = explored
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = open_explore()
    catalog = nb.load_catalog(db, "demo")
    # default: three layers of the stored feature set side by side (no run model loads on a first visit)
    def shown_labels():  # labels name feature sets and runs (user text): Markdown-escaped, so shown as typed
        return [re.sub(r"\\(.)", r"\1", m.value) for m in at.markdown
                if m.value.startswith("**") and " · " in m.value and "`" not in m.value]
    assert shown_labels()[:3] == ["**syn · L2**", "**syn · L3**", "**syn · L0**"]
    assert len([m for m in at.markdown if "· cos " in m.value]) == 30
    # runs are one choice away: ten neighbours each under their trained item vectors
    at.selectbox(key="xp_rep_1").set_value(f"run:{runs[0].id}").run()
    at.selectbox(key="xp_rep_2").set_value(f"run:{runs[1].id}").run()
    assert shown_labels()[:3] == ["**syn · L2**", f"**run #{runs[0].id} · id**", f"**run #{runs[1].id} · gate (syn)**"]
    assert len([m for m in at.markdown if "· cos " in m.value]) == 30
    assert at.selectbox(key="xp_item").value == int(catalog.items["popularity"].idxmax())

    # pick a video by searching its id; its neighbours under layer 3 are the exact top-10
    target = catalog.items.iloc[7]
    at.text_input(key="xp_search").input(target["item_id"]).run()
    assert at.selectbox(key="xp_item").value == 7
    at.text_input(key="xp_layers_0_1").input("0").run()
    assert not at.exception, [e.value for e in at.exception]
    want = nb.neighbours_of(db, nb.feature_source(db, "syn", "0"), target["item_id"], 10)
    lines = [m.value for m in at.markdown if re.search(r"\n\d+\. ", m.value) and "· cos " in m.value]
    first_column = lines[:10]
    assert [l.split("`")[1] for l in first_column] == [w["item_id"] for w in want]
    assert f"cos {want[0]['score']:.3f}" in first_column[0]

    # a user: history thumbnails and two runs' top-10, the test item marked when hit
    user = catalog.search_users("")[-1]                    # the shortest history: plenty of unseen items
    at.selectbox(key="xp_user").set_value(user).run()
    rec_lines = [m.value for m in at.markdown if "· score " in m.value]
    assert len(rec_lines) == 20
    for run, block in zip(runs[::-1], (rec_lines[:10], rec_lines[10:])):  # newest run first
        rec = nb.load_run_model(db, run.id).recommend(user)
        assert [l.split("`")[1] for l in block] == catalog.items["item_id"].to_numpy()[rec.items].tolist()
        assert sum("test item]" in l for l in block) == int(rec.hit)

    # agreement: layers 0 and 1 hold the same vectors -> overlap 1.0
    at.selectbox(key="xp_agree_fs").set_value(1).run()
    assert not at.exception, [e.value for e in at.exception]
    tables = [t for t in at.dataframe if "syn · L0" in list(t.value.columns)]
    assert len(tables) == 1 and not at.get("plotly_chart")   # a coloured table: no chart library to load
    frame = tables[0].value
    names = list(frame.columns)
    z = frame.to_numpy(dtype=float)
    i0, i1 = names.index("syn · L0"), names.index("syn · L1")
    assert z[i0, i1] == 1.0 and np.allclose(np.diag(z), 1.0) and len(names) == 6  # L0..L3 + two runs
    assert list(frame.index) == names


def test_explore_bad_layer_is_a_clear_error(explored, monkeypatch):
    db, _ = explored
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = open_explore()
    at.text_input(key="xp_layers_0_1").input("9").run()
    assert not at.exception
    assert any("outside 0..3" in e.value for e in at.error)
