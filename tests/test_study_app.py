"""The Study page through AppTest: the form queues one sweep, and a study's stored runs show verdicts and plots."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from data_helpers import write_generic
from jobs.datasets import import_generic
from test_study import CONTRADICTING, SUPPORTING, store_study

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_study() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/study.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("DFF_WORKER", "0")


@pytest.fixture
def filled(db, tmp_path, monkeypatch):
    from storage.features import create_feature_set, finish_feature_set, write_vectors

    ds = import_generic(db, "d", *write_generic(tmp_path / "d", n_users=40, n_items=30, seq=8))
    rng = np.random.default_rng(0)
    n = ds.stats["items"]
    hidden = create_feature_set(db, "d", "hs", "synthetic", 7, 8)
    write_vectors(db, hidden, np.arange(n), rng.normal(size=(n, 7, 8)).astype(np.float32))
    finish_feature_set(db, hidden, "complete")
    caps = create_feature_set(db, "d", "caps", "synthetic -> text", 1, 6, kind="caption")
    write_vectors(db, caps, np.arange(n), rng.normal(size=(n, 1, 6)).astype(np.float32))
    finish_feature_set(db, caps, "complete")
    monkeypatch.setenv("DFF_DB", str(db.path))
    return db, hidden, caps


def test_study_page_empty_state(tmp_path, monkeypatch):
    monkeypatch.setenv("DFF_DB", str(tmp_path / "empty.duckdb"))
    at = open_study()
    assert any("No dataset yet" in i.value for i in at.info)


def test_study_page_form_queues_one_sweep(filled):
    from storage.queue import list_jobs

    db, _, _ = filled
    at = open_study()
    assert at.selectbox(key="st_features_d").value == "hs"
    at.selectbox(key="st_captions_d").set_value("caps").run()
    at.text_input(key="st_seeds").set_value("2").run()
    at.number_input(key="st_points").set_value(3).run()
    # id, replace, init, caption, gate@0,3,6, dff all, dff 1-4 = 9 per seed
    assert any("**18 training runs**" in c.value for c in at.caption)
    at.text_input(key="st_name_d_hs").set_value("page-study").run()
    at.button(key="st_queue").click().run()
    assert not at.exception, [e.value for e in at.exception]
    sweeps = [j for j in list_jobs(db) if j.kind == "sweep"]
    assert len(sweeps) == 1 and sweeps[0].group_name == "page-study"
    assert sweeps[0].params["seeds"] == [1, 2] and sweeps[0].params["plan"]["captions"] == "caps"
    assert len(sweeps[0].params["runs"]) == 9
    assert any("queued study 'page-study'" in s.value.replace("\\", "") for s in at.success)  # names are escaped
    # queuing the same name again is refused with a clear message
    at.button(key="st_queue").click().run()
    assert any("already has runs or queued jobs" in e.value for e in at.error)
    assert len([j for j in list_jobs(db) if j.kind == "sweep"]) == 1


def test_study_page_shows_verdicts_plots_and_exports(filled):
    from dff_core.study.plan import StudyRequest
    from jobs.study import queue_study

    db, hidden, caps = filled
    queue_study(db, StudyRequest("d", "hs", captions="caps", name="syn", layers=[0, 2, 4], intermediate=(1, 4)))
    store_study(db, hidden, caps, SUPPORTING, study="syn")
    queue_study(db, StudyRequest("d", "hs", captions="caps", name="con", layers=[0, 2, 4], intermediate=(1, 4)))
    store_study(db, hidden, caps, CONTRADICTING, study="con")
    at = open_study()
    assert at.selectbox(key="st_study").options == ["con", "syn"]  # newest first
    at.selectbox(key="st_study").set_value("syn").run()
    heads = [h.value for h in at.subheader]
    for n in (1, 2, 3):
        assert any(h.startswith(f"Finding {n}:") and h.endswith(":material/check_circle: supported]") for h in heads), heads
    assert len(at.get("plotly_chart")) == 4
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download report (HTML)", "Download verdicts (CSV)", "Download runs (CSV)"]
    at.selectbox(key="st_study").set_value("con").run()
    assert any(h.startswith("Finding 2:") and "contradicted]" in h for h in (h.value for h in at.subheader))


def test_study_page_shows_under_trained_with_its_count_and_warns_on_a_low_cap(filled):
    from dff_core.study.plan import StudyRequest
    from jobs.study import queue_study

    db, hidden, caps = filled
    queue_study(db, StudyRequest("d", "hs", captions="caps", name="cap", layers=[0, 2, 4], intermediate=(1, 4)))
    store_study(db, hidden, caps, SUPPORTING, study="cap", capped=("id", "replace"))
    at = open_study()
    heads = [h.value for h in at.subheader]
    assert any(h.startswith("Finding 2:") and "under-trained]" in h and "[6 runs capped while improving]" in h
               for h in heads), heads
    assert any(h.startswith("Finding 3:") and h.endswith("supported]") for h in heads), heads
    assert any("6 of 30 runs hit the epoch cap" in w.value for w in at.warning)
    # the form: the default cap is generous; a low one says what it costs (runs here early-stopped at 5 epochs)
    assert at.number_input(key="st_epochs").value == 200
    assert not any("epoch cap of" in w.value for w in at.warning)
    at.number_input(key="st_epochs").set_value(3).run()
    assert any("epoch cap of 3 is below what runs on this dataset needed" in w.value for w in at.warning)
