"""A newcomer's first hour: the demo dataset on its own and the demo study's estimated time (Home and the CLI)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
FAMILY = {"description": "", "poolings": ["all_mean"], "default_pooling": "all_mean", "can_caption": False,
          "needs_source": False, "available": True}
FAMILIES = [dict(FAMILY, family="smollm2", inputs=["title"], default_inputs=["title"], num_layers=31, dim=576),
            dict(FAMILY, family="efficientnet-lite0", inputs=["frames"], default_inputs=["frames"], num_layers=9,
                 dim=1280)]


@pytest.fixture(autouse=True)
def _setup(monkeypatch):
    from jobs import submit
    monkeypatch.setenv("DFF_WORKER", "0")
    monkeypatch.setattr(submit, "backbone_families", lambda: ([dict(f) for f in FAMILIES], None))


def open_home() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_estimate_defaults_and_measured_rates():
    from dff_core.demo.estimate import DEMO_EPOCHS, StudyEstimate, build_step, extraction_step, training_step

    est = StudyEstimate([build_step(), extraction_step("x", 10.0, (4.0, 12.0), False), training_step(26)])
    assert [(s.low, s.high) for s in est.steps] == [(15.0, 25.0), (14.0, 22.0),
                                                     (26.0 * DEMO_EPOCHS[0], 26.0 * DEMO_EPOCHS[1])]
    assert est.low == 15 + 14 + 26 * 15 and est.high == 25 + 22 + 26 * 45 and not est.measured
    measured = StudyEstimate([build_step(20.0), training_step(4, (10.0, 30.0))])
    assert [(s.low, s.high) for s in measured.steps] == [(15.0, 25.0), (40.0, 120.0)] and measured.measured


def test_demo_study_estimate_follows_the_plan(tmp_path):
    """Fresh database: build + 2 extractions (300 items, model loading included) + 26 runs, all defaults."""
    from dff_core.estimates import DEFAULT_ITEMS_PER_S
    from dff_core.load_estimate import MODEL_LOAD_S
    from jobs import submit
    from jobs.demo_estimate import demo_study_estimate, plan_runs
    from storage import Database

    db = Database(tmp_path / "e.duckdb")
    plan, _ = submit.demo_study_plan(db)
    est = demo_study_estimate(db, plan, FAMILIES)
    assert [s.what for s in est.steps] == ["build the demo dataset", "extract smollm2-titles",
                                           "extract effnet-frames", "26 training runs"]
    assert plan_runs(plan) == 26
    smol = 300 / DEFAULT_ITEMS_PER_S["smollm2"]
    assert est.steps[1].low == pytest.approx(smol + MODEL_LOAD_S["smollm2"][0])
    assert est.steps[1].high == pytest.approx(smol + MODEL_LOAD_S["smollm2"][1])
    assert est.low == pytest.approx(sum(s.low for s in est.steps))


def test_home_builds_the_demo_dataset_alone(tmp_path, monkeypatch):
    from storage import Database
    from storage.queue import list_jobs

    monkeypatch.setenv("DFF_DB", str(tmp_path / "home.duckdb"))
    at = open_home()
    assert at.button(key="demo_dataset").label == "Build the demo dataset"
    assert at.button(key="demo_study").label == "Run the demo study"
    from jobs import submit
    from jobs.demo_estimate import demo_study_estimate
    from pages.common import format_seconds
    from storage import Database as Db

    est = demo_study_estimate(Db(tmp_path / "home.duckdb"), submit.demo_study_plan(Db(tmp_path / "home.duckdb"))[0],
                              FAMILIES)
    text = " ".join(m.value for m in at.markdown)
    assert f"Estimated time: **{format_seconds(est.low)} – {format_seconds(est.high)}** (from defaults" in text
    assert "26 training runs 6 min 30 s–19 min 30 s" in text
    at.button(key="demo_dataset").click().run()
    assert not at.exception
    jobs = list_jobs(Database(tmp_path / "home.duckdb"))
    assert [(j.kind, j.params, j.group_name) for j in jobs] == [("demo", {}, None)]
    at.run()  # queued: no second button, and the study will not queue a second build
    assert not any(b.key == "demo_dataset" for b in at.button)
    assert any("queued or running" in i.value for i in at.info)
    assert "Will queue: extraction of smollm2\\-titles, extraction of effnet\\-frames, a sweep of 26" in " ".join(c.value for c in at.caption)


def test_cli_demo_study_plan_and_queue(tmp_path, capsys):
    from cli import main
    from storage import Database
    from storage.queue import list_jobs

    db = str(tmp_path / "cli.duckdb")
    assert main(["--db", db, "demo-study", "--plan", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["kind"] for p in out["plan"]] == ["demo", "extract", "extract", "sweep"] and out["queued"] == []
    assert out["estimate"]["low_s"] == pytest.approx(sum(s["low_s"] for s in out["estimate"]["steps"]), abs=0.5)
    assert list_jobs(Database(db)) == []
    assert main(["--db", db, "demo-study"]) == 0
    text = capsys.readouterr().out
    assert "26 training runs" in text and "total" in text and "queued jobs #1, #2, #3, #4" in text
    assert [j.kind for j in sorted(list_jobs(Database(db)), key=lambda j: j.id)] == ["demo", "extract", "extract",
                                                                                     "sweep"]


def test_job_outcomes_name_capped_runs_and_stored_items(tmp_path):
    """The Jobs page's read model: a finished train job's run ending (capped while improving) and a finished
    extraction's stored/total items, not the last progress step."""
    import numpy as np

    from data_helpers import write_generic
    from jobs.datasets import import_generic
    from jobs.workflows import import_features_npz, run_training
    from storage import Database, queue, views
    from storage.datasets import get_dataset, load_items

    db = Database(tmp_path / "j.duckdb")
    import_generic(db, "small", *write_generic(tmp_path / "d", n_users=30, n_items=20, seq=6))
    run = run_training(db, "small", "id", settings={"epochs": 2, "patience": 5, "hidden": 16, "batch_size": 64},
                       seed=1)
    items = load_items(db, get_dataset(db, "small").id)
    np.savez(tmp_path / "f.npz", item_ids=np.asarray(items["item_id"].tolist(), dtype=str),
             features=np.ones((len(items), 1, 4), np.float32))
    import_features_npz(db, "f", "small", tmp_path / "f.npz", backbone="synthetic")
    train = queue.enqueue(db, "train", {"dataset": "small", "strategy": "id"})
    extract = queue.enqueue(db, "extract", {"dataset": "small", "name": "f", "backbone": "synthetic"})
    for _ in range(2):
        queue.claim_next(db, 1)
    queue.finish(db, train, "done", result_update={"run_id": run.id})
    queue.finish(db, extract, "done")
    got = views.job_outcomes(db, queue.list_jobs(db))
    assert run.ending == "capped_improving"
    assert got[train] == {"ending": "capped while improving", "capped": True, "epochs": 2,
                          "best_epoch": run.best_epoch, "epoch_cap": 2}
    assert got[extract] == {"stored": 20, "total": 20}


@pytest.mark.parametrize("text, limit, want", [("Tropical sunset in 60 seconds # trending", 28, "Tropical sunset in 60…"),
                                               ("short", 28, "short"), ("abcdefghijklmnop", 10, "abcdefghi…"),
                                               ("day 4 of hidden road trip", 25, "day 4 of hidden road trip")])
def test_clip_cuts_at_a_word_with_an_ellipsis(text, limit, want):
    from pages.common import clip
    assert clip(text, limit) == want and len(clip(text, limit)) <= limit


def test_extract_page_facts_as_text_loading_in_the_time_and_a_free_name(tmp_path, monkeypatch):
    import numpy as np

    from data_helpers import write_generic
    from dff_core.load_estimate import MODEL_LOAD_S
    from jobs.datasets import import_generic
    from jobs.workflows import import_features_npz
    from pages.common import format_seconds
    from storage import Database
    from storage.datasets import get_dataset, load_items

    db = Database(tmp_path / "x.duckdb")
    import_generic(db, "small", *write_generic(tmp_path / "d", n_users=12, n_items=20, seq=5))
    items = load_items(db, get_dataset(db, "small").id)
    np.savez(tmp_path / "f.npz", item_ids=np.asarray(items["item_id"].tolist(), dtype=str),
             features=np.ones((len(items), 1, 4), np.float32))
    import_features_npz(db, "smollm2-title", "small", tmp_path / "f.npz", backbone="smollm2")
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("pages/extract.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="ex_family").value == "smollm2"
    assert not any(n.label in ("Layers stored", "Hidden size") for n in at.number_input)
    assert "smollm2's built-in weights store 31 layers × 576 dimensions per item." in [c.value for c in at.caption]
    assert [t.value for t in at.text_input if t.label == "Feature set name"] == ["smollm2-title-2"]
    items_s = 20 / 25.0  # DEFAULT_ITEMS_PER_S["smollm2"]
    low, high = MODEL_LOAD_S["smollm2"]
    time_metric = next(m for m in at.metric if m.label == "Time")
    assert time_metric.value == f"{format_seconds(items_s + low)} – {format_seconds(items_s + high)}"


def test_preprocessing_in_words():
    from storage.views import preprocessing_text
    assert preprocessing_text({"min_interactions": 5, "max_items_per_user": None, "top_items": None,
                               "split": "leave_one_out"}) == "users with ≥ 5 interactions · whole histories · " \
                                                             "leave-one-out split"
    assert preprocessing_text({"min_interactions": 3, "max_items_per_user": 50, "top_items": 2000}) == \
        "the 2,000 most-interacted items · users with ≥ 3 interactions · each user's last 50 items"


def test_data_page_density_preprocessing_and_top_items(tmp_path, monkeypatch):
    from data_helpers import write_generic
    from jobs.datasets import import_generic
    from storage import Database

    db = Database(tmp_path / "d.duckdb")
    ds = import_generic(db, "small", *write_generic(tmp_path / "d", n_users=12, n_items=20, seq=6))
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("pages/data.py").run()
    assert not at.exception, [e.value for e in at.exception]
    density = next(m for m in at.metric if m.label == "Density").value
    assert density == f"{ds.stats['density']:.2%}"
    assert any("preprocessing: users with ≥ 5 interactions · whole histories · leave\\-one\\-out split" in c.value
               for c in at.caption)
    assert at.number_input(key="ml_top").label == "Keep only the N most-interacted items (0 = all)"
    inter, items = write_generic(tmp_path / "e", n_users=30, n_items=12, seq=6)[:2]
    at.text_input(key="gen_name").input("top")
    at.text_input(key="gen_inter").input(str(inter))
    at.text_input(key="gen_items").input(str(items))
    at.number_input(key="gen_top").set_value(10)
    next(b for b in at.button if b.label == "Import" and "import_paths" in str(b.form_id)).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    from storage.datasets import get_dataset
    top = get_dataset(db, "top")
    assert top.params["top_items"] == 10 and top.stats["items"] <= 10


def test_train_page_strategy_first_mean_note_and_no_caption_without_a_caption_set(tmp_path, monkeypatch):
    import numpy as np

    from data_helpers import write_generic
    from jobs.datasets import import_generic
    from jobs.workflows import import_features_npz
    from storage import Database
    from storage.datasets import get_dataset, load_items

    db = Database(tmp_path / "t.duckdb")
    import_generic(db, "small", *write_generic(tmp_path / "d", n_users=20, n_items=20, seq=6))
    items = load_items(db, get_dataset(db, "small").id)
    np.savez(tmp_path / "f.npz", item_ids=np.asarray(items["item_id"].tolist(), dtype=str),
             features=np.random.default_rng(0).normal(size=(len(items), 4, 8)).astype(np.float32))
    import_features_npz(db, "feats", "small", tmp_path / "f.npz", backbone="synthetic")
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    strategy = at.selectbox(key="tr_strategy_True")
    assert "caption" not in strategy.options and strategy.value == "dff"
    labels = [w.label for w in at.main if hasattr(w, "label")]
    assert labels.index("Strategy") < labels.index("Layer choice")          # chosen before the layers
    strategy.set_value("gate").run()
    captions = [c.value for c in at.caption]
    assert any("`gate` fuses one feature vector" in c for c in captions)
    assert "4 layers chosen: `gate` will train on their mean." in captions
    at.selectbox(key="tr_strategy_True").set_value("id").run()
    assert not any(h.value == "Layers" for h in at.subheader)                 # layers do not matter for id


def test_jobs_step_text_for_results_and_loading():
    """The Jobs page's step line: a finished job's result, an extraction that has not reported yet is loading."""
    from types import SimpleNamespace

    from storage.views import job_step_text as _step_text

    job = lambda **kw: SimpleNamespace(**{"kind": "extract", "status": "running", "step": None, **kw})  # noqa: E731
    assert _step_text(job(), {}) == "loading the backbone (items are counted from the first batch on)"
    assert _step_text(job(step="12/300 items"), {}) == "12/300 items"
    assert _step_text(job(status="done", step="288/300 items"), {"stored": 300, "total": 300}) == "300/300 items stored"
    assert _step_text(job(kind="train", status="done", step="epoch 2"),
                      {"ending": "capped while improving", "epochs": 2, "best_epoch": 2}) == \
        "capped while improving after 2 epochs (best epoch 2)"
