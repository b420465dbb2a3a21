"""Dashboard pages through Streamlit's AppTest (no browser): each page's logic, empty states and errors.

Pages are reached through ``app.py`` and ``switch_page`` (as in the real app: the navigation lives there).
Live parts (the Jobs page's refreshing fragment) are covered by the browser tests in tests/browser/.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from data_helpers import write_generic
from jobs.datasets import import_generic

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("DFF_WORKER", "0")


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A small dataset, a 4-layer feature set whose layer 2 knows the co-watch structure, and three finished runs."""
    from jobs.workflows import import_features_npz, run_training
    from storage import Database
    from storage.datasets import get_dataset, load_items

    root = tmp_path_factory.mktemp("app")
    db = Database(root / "filled.duckdb")
    import_generic(db, "small", *write_generic(root / "d", n_users=40, n_items=30, seq=8))
    items = load_items(db, get_dataset(db, "small").id)
    rng = np.random.default_rng(0)
    idx = items["idx"].to_numpy()
    feats = rng.normal(size=(len(items), 4, 8)).astype(np.float32)
    np.savez(root / "f.npz", item_ids=np.asarray(items["item_id"].tolist(), dtype=str), features=feats)
    import_features_npz(db, "feats", "small", root / "f.npz", backbone="synthetic")
    settings = {"epochs": 1, "batch_size": 64, "hidden": 16}
    runs = [run_training(db, "small", "id", settings=settings, seed=1, study="s"),
            run_training(db, "small", "id", settings=settings, seed=2, study="s"),
            run_training(db, "small", "dff", features="feats", layers="1-3", settings=settings, seed=1, study="s")]
    assert [r.status for r in runs] == ["done"] * 3 and len(idx) == 30
    return db, runs


def test_home_shows_empty_state(tmp_path, monkeypatch):
    monkeypatch.setenv("DFF_DB", str(tmp_path / "empty.duckdb"))
    at = open_app()
    infos = " ".join(i.value for i in at.info)
    assert "No datasets yet" in infos and "No feature sets yet" in infos and "No finished runs yet" in infos
    assert [m.value for m in at.metric][:3] == ["0", "0", "0"]
    assert at.button(key="demo_study").label == "Run the demo study"


def test_home_lists_datasets_with_stats(tmp_path, monkeypatch):
    from storage import Database
    db = Database(tmp_path / "home.duckdb")
    import_generic(db, "small", *write_generic(tmp_path / "d", n_users=12, n_items=20, seq=6))
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = open_app()
    frame = at.dataframe[0].value
    assert frame["name"].tolist() == ["small"]
    assert frame["users"].tolist() == [12] and frame["interactions"].tolist() == [72]


def test_home_demo_study_button_queues_jobs(tmp_path, monkeypatch):
    """With no demo data and no backbone available, the demo study is the demo dataset + an ID-only sweep."""
    from jobs import submit
    from storage.queue import list_jobs
    from storage import Database

    monkeypatch.setattr(submit, "backbone_families", lambda: ([], "no registry in this test"))
    monkeypatch.setenv("DFF_DB", str(tmp_path / "demo.duckdb"))
    at = open_app()
    at.button(key="demo_study").click().run()
    assert not at.exception
    jobs = sorted(list_jobs(Database(tmp_path / "demo.duckdb")), key=lambda j: j.id)
    assert [j.kind for j in jobs] == ["demo", "sweep"]
    assert jobs[1].params["runs"] == [{"strategy": "id"}] and jobs[1].params["seeds"] == submit.DEMO_SEEDS
    assert jobs[1].group_name == submit.DEMO_STUDY
    at.run()  # queued now: the plan is empty, the button is gone
    assert not any(b.key == "demo_study" for b in at.button)


def test_demo_study_plan_with_backbones(tmp_path, monkeypatch):
    """With both demo backbones available: two extractions, then one sweep over ID + every strategy x feature set."""
    from jobs import submit
    from jobs.handlers import expand_sweep
    from storage import Database

    fams = [dict(FAKE_FAMILIES[0], family="smollm2", inputs=["title"], default_inputs=["title"]),
            dict(FAKE_FAMILIES[0], family="efficientnet-lite0", inputs=["frames", "cover"], default_inputs=["frames"])]
    monkeypatch.setattr(submit, "backbone_families", lambda: (fams, None))
    plan, notes = submit.demo_study_plan(Database(tmp_path / "p.duckdb"))
    assert [k for k, _ in plan] == ["demo", "extract", "extract", "sweep"] and notes == []
    assert [p["inputs"] for k, p in plan if k == "extract"] == [["title"], ["frames"]]
    runs = expand_sweep(plan[-1][1])
    per_seed = 1 + 2 * (len(submit.MAIN_STRATEGIES) - 1)
    assert len(runs) == per_seed * len(submit.DEMO_SEEDS)
    assert [r["seed"] for r in runs[:per_seed]] == [submit.DEMO_SEEDS[0]] * per_seed  # seed by seed
    assert {r["features"] for r in runs if r["strategy"] == "dff"} == {"smollm2-titles", "effnet-frames"}


def test_data_page_stats_plots_and_import_errors(filled, tmp_path, monkeypatch):
    db, _ = filled
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = open_app("data")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "40" and metrics["Items"] == "30" and metrics["Interactions"] == "320"
    charts = at.get("vega_lite_chart")  # Vega-Lite, not plotly: the lighter chart library for a first visit
    assert len(charts) == 2 and not at.get("plotly_chart")
    assert [json.loads(c.proto.spec)["title"] for c in charts] == ["Sequence length", "Item popularity (long tail)"]
    # a bad path: one clear error line, nothing stored, no traceback
    at.text_input(key="gen_name").input("broken")
    at.text_input(key="gen_inter").input(str(tmp_path / "missing.csv"))
    at.text_input(key="gen_items").input(str(tmp_path / "missing_items.csv"))
    [b for b in at.button if b.label == "Import"][1].click().run()
    assert not at.exception
    assert any("Import failed" in e.value and "missing" in e.value for e in at.error)
    # a good one
    inter, items = write_generic(tmp_path / "ok", n_users=10, n_items=15, seq=6)
    at.text_input(key="gen_name").input("second")
    at.text_input(key="gen_inter").input(str(inter))
    at.text_input(key="gen_items").input(str(items))
    [b for b in at.button if b.label == "Import"][1].click().run()
    assert not at.exception
    assert any("Imported “second”" in s.value for s in at.success)
    from storage.removal import delete_dataset
    delete_dataset(db, "second")


def test_data_page_shows_validation_warnings_in_a_table(tmp_path, monkeypatch):
    monkeypatch.setenv("DFF_DB", str(tmp_path / "warn.duckdb"))
    inter, items = write_generic(tmp_path / "m", n_users=10, n_items=14, seq=6, media=True)  # videos are missing
    at = open_app("data")
    at.text_input(key="gen_name").input("withmedia")
    at.text_input(key="gen_inter").input(str(inter))
    at.text_input(key="gen_items").input(str(items))
    [b for b in at.button if b.label == "Import"][1].click().run()
    assert not at.exception
    assert any("validation warning(s)" in w.value for w in at.warning)
    warnings = at.dataframe[0].value["warning"].tolist()
    assert len(warnings) == 1 and warnings[0].startswith("7 video file(s) are missing"), warnings


FAKE_FAMILIES = [{"family": "fakenet", "description": "a test family", "inputs": ["frames", "title"],
                  "default_inputs": ["title"], "poolings": ["all_mean", "last"], "default_pooling": "all_mean",
                  "can_caption": False, "needs_source": False, "frame_size": 224, "available": True,
                  "num_layers": 5, "dim": 100}]


def test_extract_page_estimate_and_missing_registry(filled, monkeypatch):
    from jobs import submit

    db, _ = filled
    monkeypatch.setenv("DFF_DB", str(db.path))
    monkeypatch.setattr(submit, "backbone_families", lambda: ([], "registry missing in this test"))
    at = open_app("extract")
    assert any("registry missing in this test" in e.value for e in at.error)

    monkeypatch.setattr(submit, "backbone_families", lambda: ([dict(f) for f in FAKE_FAMILIES], None))
    at = open_app("extract")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Disk"] == "30.0 KB"  # 30 items x 5 layers x 100 dims x 2 bytes
    assert metrics["Time"] != "—"
    assert at.multiselect(key="ex_inputs_fakenet").value == ["title"]
    at.multiselect(key="ex_inputs_fakenet").set_value([]).run()
    at.button(key="ex_launch").click().run()
    assert not at.exception and any("Cannot launch" in e.value for e in at.error)


def test_train_page_layer_scores_and_launch(filled, monkeypatch):
    from storage.queue import get_job, list_jobs, request_cancel

    db, _ = filled
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = open_app("train")
    assert at.selectbox(key="tr_features_small").value == "feats"
    bars = at.get("vega_lite_chart")  # the layer usefulness bars: one per stored layer
    assert len(bars) == 1 and not at.get("plotly_chart")
    spec = json.loads(bars[0].proto.spec)
    assert spec["title"].startswith("Layer usefulness")
    import pyarrow as pa

    tables = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in bars[0].proto.datasets]
    layers = next(t for t in tables if "lift" in t.columns)
    assert sorted(layers["layer"]) == [0, 1, 2, 3] and (layers["lift"] > 0).all()
    assert set(layers["chosen"]) <= {"chosen", "not chosen"}
    fs_id = at.radio[0].key
    at.radio(key=fs_id).set_value("range").run()
    at.slider(key=fs_id.replace("tr_layer_mode_", "tr_span_")).set_value((1, 2)).run()
    at.number_input(key="tr_epochs").set_value(2).run()
    at.selectbox(key="tr_strategy_True").set_value("gate").run()
    assert at.selectbox(key="tr_device").value == "auto"
    at.selectbox(key="tr_loss").set_value("sampled").run()
    at.number_input(key="tr_negatives").set_value(9).run()
    before = {j.id for j in list_jobs(db)}
    at.button(key="tr_launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    new = [j for j in list_jobs(db) if j.id not in before]
    assert len(new) == 1
    p = new[0].params
    assert (p["strategy"], p["features"], p["layers"], p["settings"]["epochs"]) == ("gate", "feats", "1-2", 2)
    assert (p["settings"]["loss"], p["settings"]["negatives"], p["settings"]["device"]) == ("sampled", 9, "auto")
    request_cancel(db, new[0].id)
    assert get_job(db, new[0].id).status == "cancelled"


def test_train_page_sweep_counts_and_queues(filled, monkeypatch):
    from storage.queue import list_jobs, request_cancel

    db, _ = filled
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = open_app("train")
    at.segmented_control(key="tr_mode").set_value("Sweep").run()
    at.multiselect(key="tr_sw_strategies_True").set_value(["id", "dff"]).run()
    at.text_input(key="tr_sw_layers").input("all; 2").run()
    at.text_input(key="tr_sw_seeds").input("1,2").run()
    assert any("**6 training runs**" in c.value for c in at.caption)  # id x 2 seeds + dff x 2 layers x 2 seeds
    at.button(key="tr_sw_launch").click().run()
    assert any("name the study" in e.value for e in at.error)  # no study name yet
    at.text_input(key="tr_sw_study").input("sw").run()
    at.button(key="tr_sw_launch").click().run()
    sweeps = [j for j in list_jobs(db) if j.kind == "sweep" and j.group_name == "sw"]
    assert len(sweeps) == 1 and sweeps[0].params["layers"] == ["all", "2"] and sweeps[0].params["seeds"] == [1, 2]
    request_cancel(db, sweeps[0].id)


def test_train_page_without_features_offers_only_id(tmp_path, monkeypatch):
    from storage import Database
    db = Database(tmp_path / "nofeat.duckdb")
    import_generic(db, "small", *write_generic(tmp_path / "d"))
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = open_app("train")
    assert at.selectbox(key="tr_strategy_False").options == ["id — ID embedding only (no features)"]
    assert any("only the ID-only baseline" in i.value for i in at.info)


def test_jobs_page_lists_and_cancels(filled, monkeypatch):
    from storage.queue import enqueue, get_job

    db, _ = filled
    monkeypatch.setenv("DFF_DB", str(db.path))
    job_id = enqueue(db, "train", {"dataset": "small", "strategy": "id", "seed": 5, "settings": {"epochs": 1}})
    at = open_app("jobs")
    frame = at.dataframe[0].value
    assert job_id in frame["id"].tolist()
    assert frame.loc[frame["id"] == job_id, "status"].item() == "queued"
    at.button(key=f"cancel_{job_id}").click().run()
    assert get_job(db, job_id).status == "cancelled"
    assert at.button(key=f"cancel_{job_id}").disabled  # nothing to cancel any more
    at.button(key=f"retry_{job_id}").click().run()
    assert get_job(db, job_id).status == "queued"
    at.button(key=f"cancel_{job_id}").click().run()


def test_compare_page_leaderboard_and_plots(filled, monkeypatch):
    db, runs = filled
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = open_app("compare")
    board = at.dataframe[0].value
    assert len(board) == 2  # id (2 seeds) and dff
    id_row = board[board["strategy"] == "id"].iloc[0]
    values = [r.result["test"]["NDCG@10"] for r in runs[:2]]
    assert id_row["seeds"] == 2
    assert (id_row["loss"], id_row["device"]) == ("full", "cpu")  # the defaults, resolved on CPU
    assert id_row["NDCG@10 (mean ± std)"] == f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
    assert len(at.get("download_button")) == 2
    assert len(at.get("plotly_chart")) >= 3  # strategies, cold/warm, DFF weights
    assert any(f"#{runs[2].id}" in c.value for c in at.caption)
    at.multiselect(key="cmp_strategy").set_value(["dff"]).run()
    assert at.dataframe[0].value["strategy"].tolist() == ["dff"]


def test_compare_page_empty_state(tmp_path, monkeypatch):
    monkeypatch.setenv("DFF_DB", str(tmp_path / "empty.duckdb"))
    at = open_app("compare")
    assert any("No finished runs yet" in i.value for i in at.info)


def test_extract_page_queues_a_job_with_the_real_registry(filled, monkeypatch):
    from storage.queue import list_jobs, request_cancel

    families = pytest.importorskip("dff_core.backbones").list_families()
    if not any(f["family"] == "smollm2" and f.get("available") for f in families):
        pytest.skip("the smollm2 backbone is not available here")
    db, _ = filled
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = open_app("extract")
    assert at.selectbox(key="ex_family").value == "smollm2"  # available families first
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Disk"] == "1.1 MB"  # 30 items x 31 layers x 576 dims x 2 bytes = 1,071,360 bytes
    before = {j.id for j in list_jobs(db)}
    at.button(key="ex_launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    new = [j for j in list_jobs(db) if j.id not in before]
    assert len(new) == 1 and new[0].kind == "extract"
    p = new[0].params
    assert (p["backbone"], p["inputs"], p["pooling"], p["name"]) == ("smollm2", ["title"], "all_mean", "smollm2-title")
    assert (p["device"], p["compute_dtype"], p["quantize"]) == ("auto", "auto", "none")
    request_cancel(db, new[0].id)


def test_compare_page_marks_and_hides_runs_capped_while_improving(filled, monkeypatch, tmp_path, capsys):
    """The fixture's 1-epoch runs all hit the cap while improving; one id run is marked early-stopped here.
    The leaderboard says so per row, and the checkbox (and its CLI twin) leaves the capped runs out."""
    import shutil

    import sqlalchemy as sa

    from cli import main
    from storage import Database

    src, runs = filled
    db = Database(shutil.copy(src.path, tmp_path / "copy.duckdb"))
    with db.session() as conn:
        conn.execute(sa.text("UPDATE runs SET ending = 'early_stopped' WHERE id = :i"), {"i": runs[0].id})
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = open_app("compare")
    board = at.dataframe[0].value.set_index("strategy")
    assert board.loc["id", "seeds"] == 2 and board.loc["id", "training"] == "⚠ capped while improving (1 of 2)"
    assert board.loc["dff", "training"] == "⚠ capped while improving (1 of 1)"
    assert any("2 of these runs hit their epoch cap" in w.value for w in at.warning)
    at.checkbox(key="cmp_hide_capped").check().run()
    board = at.dataframe[0].value
    assert board["strategy"].tolist() == ["id"] and board["seeds"].tolist() == [1]
    assert board["training"].tolist() == ["converged"] and board["runs"].tolist() == [str(runs[0].id)]
    assert not any("hit their epoch cap" in w.value for w in at.warning)

    capsys.readouterr()
    assert main(["--db", str(db.path), "compare", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted((r["strategy"], r["capped"]) for r in rows) == [("dff", 1), ("id", 1)]
    assert main(["--db", str(db.path), "compare", "--hide-capped", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["strategy"], r["seeds"], r["capped"]) for r in rows] == [("id", 1, 0)]


def test_train_page_defaults_to_early_stopping_and_warns_on_a_low_cap(filled, monkeypatch):
    db, _ = filled
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = open_app("train")
    assert at.number_input(key="tr_epochs").value == 200 and at.number_input(key="tr_patience").value == 5
    assert not any("epoch cap" in w.value for w in at.warning)
    at.number_input(key="tr_epochs").set_value(10).run()
    assert any("An epoch cap of 10 is low" in w.value for w in at.warning)
    # batch size and learning rate start from the dataset's size (40 users: the small-data values)
    assert at.number_input(key="tr_batch_small").value == 256 and at.number_input(key="tr_lr_small").value == 1e-3
    assert at.number_input(key="tr_lrdecay_small").value == 1.0
    from dff_core.train import defaults

    monkeypatch.setattr(defaults, "LARGE_DATASET_USERS", 40)
    at = open_app("train")
    assert at.number_input(key="tr_batch_small").value == 1024 and at.number_input(key="tr_lr_small").value == 1e-2
    assert at.number_input(key="tr_lrdecay_small").value == 0.5                 # halved on each plateau there
