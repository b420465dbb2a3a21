"""Export to MLflow, read back with MLflow's own client: params, per-epoch metrics with their steps, final
metrics, DFF layer weights, tags linking back; a re-export updates instead of duplicating; the Compare page's
button writes only inside the database's folder."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mlflow", reason="the MLflow export is optional: pip install -r requirements-mlflow.txt")

from mlflow.tracking import MlflowClient  # noqa: E402

from data_helpers import dataset_with_features  # noqa: E402
import cli  # noqa: E402
from jobs.export_mlflow import export_dir, tracking_uri  # noqa: E402
from jobs.workflows import run_training  # noqa: E402
from storage.runs import run_metrics  # noqa: E402

SETTINGS = {"epochs": 2, "patience": 0, "hidden": 16, "batch_size": 64, "max_len": 10, "num_threads": 1}


@pytest.fixture(autouse=True)
def _file_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's own client reading the folder store


@pytest.fixture(scope="module")
def runs_db(tmp_path_factory):
    db = dataset_with_features(tmp_path_factory.mktemp("mlf"), n_users=60, n_items=30, seq=8, layers=4, dim=8,
                               dataset="small", features="feats", backbone="synthetic", db_file="r.duckdb")
    runs = [run_training(db, "small", "id", settings=SETTINGS, seed=1, study="s"),
            run_training(db, "small", "dff", features="feats", layers="1-3", settings=SETTINGS, seed=2, study="s"),
            run_training(db, "small", "id", settings=SETTINGS, seed=3, study="other")]
    assert [r.status for r in runs] == ["done"] * 3
    return db, runs


def _export(db, target, *extra) -> int:
    return cli.main(["--db", str(db.path), "export-runs", "--mlflow", str(target), *extra])


def _mlflow_runs(target) -> dict[int, object]:
    client = MlflowClient(tracking_uri=tracking_uri(str(target)))
    exp = client.get_experiment_by_name("dff-small")
    return client, {int(r.data.tags["dff.run_id"]): r for r in client.search_runs([exp.experiment_id])}


def test_export_then_reexport_reads_back_with_mlflows_client(runs_db, tmp_path, capsys):
    db, (id_run, dff_run, other) = runs_db
    target = tmp_path / "mlruns"
    assert _export(db, target, "--study", "s", "--dataset", "small") == 0
    out = capsys.readouterr().out
    assert "exported 2 runs" in out and "(2 new, 0 updated)" in out
    client, got = _mlflow_runs(target)
    assert set(got) == {id_run.id, dff_run.id}  # the other study is not exported

    r = got[dff_run.id]
    assert r.info.status == "FINISHED" and r.data.tags["dff.db"] == str(db.path.resolve())
    assert r.data.tags["dff.status"] == "done" and r.data.tags["dff.study"] == "s"
    p = r.data.params
    assert (p["dataset"], p["feature_set"], p["backbone"], p["strategy"], p["layers"], p["seed"]) == \
        ("small", "feats", "synthetic", "dff", "1-3", "2")
    assert (p["engine"], p["device"], p["epochs"], p["hidden"], p["lr"]) == ("local", "cpu", "2", "16", "0.001")
    m = run_metrics(db, [dff_run.id])
    stored = m[(m.split == "val") & (m.name == "NDCG@10")].sort_values("epoch")
    history = client.get_metric_history(r.info.run_id, "val_NDCG_at_10")
    assert [h.step for h in sorted(history, key=lambda h: h.step)] == [1, 2]
    np.testing.assert_allclose([h.value for h in sorted(history, key=lambda h: h.step)], stored["value"])
    assert [h.step for h in client.get_metric_history(r.info.run_id, "train_loss")] == [1, 2]
    assert r.data.metrics["test_NDCG_at_10"] == pytest.approx(dff_run.result["test"]["NDCG@10"])
    assert r.data.metrics["best_val_HR_at_20"] == pytest.approx(dff_run.result["val"]["HR@20"])
    weights = {k: v for k, v in r.data.metrics.items() if k.startswith("final_layer_weight_")}
    assert set(weights) == {"final_layer_weight_1", "final_layer_weight_2", "final_layer_weight_3"}
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert len(client.get_metric_history(r.info.run_id, "layer_weight_2")) == 2
    assert got[id_run.id].data.params["layers"] == "" and "final_layer_weight_1" not in got[id_run.id].data.metrics

    # re-export everything: the two runs are updated in place, their histories not doubled; one run is new
    capsys.readouterr()
    assert _export(db, target, "--dataset", "small") == 0
    assert "exported 3 runs" in (out := capsys.readouterr().out) and "1 new, 2 updated" in out
    client, again = _mlflow_runs(target)
    assert set(again) == {id_run.id, dff_run.id, other.id}
    assert again[dff_run.id].info.run_id == r.info.run_id
    assert len(client.get_metric_history(r.info.run_id, "val_NDCG_at_10")) == 2


def test_bad_targets_are_one_line_errors(runs_db, tmp_path, capsys):
    db, _ = runs_db
    (tmp_path / "file.txt").write_text("x")
    assert _export(db, tmp_path / "file.txt") == 2
    assert "is a file" in capsys.readouterr().err
    with pytest.raises(ValueError, match="must be inside"):
        export_dir(db.path, "../elsewhere")
    with pytest.raises(ValueError, match="tracking server"):
        export_dir(db.path, "http://mlflow:5000")
    assert export_dir(db.path, "mlruns") == db.path.parent.resolve() / "mlruns"


def test_compare_button_exports_the_runs_it_shows(runs_db, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from data_helpers import ROOT

    db, runs = runs_db
    monkeypatch.setenv("DFF_DB", str(db.path))
    monkeypatch.setenv("DFF_WORKER", "0")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    at.switch_page("pages/compare.py").run()
    at.multiselect(key="cmp_study").set_value(["s"]).run()
    at.text_input(key="cmp_mlflow_dir").set_value("../outside").run()
    at.button(key="cmp_mlflow_export").click().run()
    assert not at.exception and any("must be inside" in e.value for e in at.error)
    at.text_input(key="cmp_mlflow_dir").set_value("exported").run()
    at.button(key="cmp_mlflow_export").click().run()
    assert not at.exception and not at.error
    assert any("Exported 2 runs" in s.value for s in at.success)
    _, got = _mlflow_runs(db.path.parent / "exported")
    assert set(got) == {runs[0].id, runs[1].id}


def test_runs_lists_config_and_final_metrics(runs_db, capsys):
    db, (id_run, dff_run, other) = runs_db
    assert cli.main(["--db", str(db.path), "runs", "--study", "s"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].split()[:3] == ["run", "status", "dataset"]
    row = next(line.split() for line in lines if line.split()[0] == str(dff_run.id))
    assert row[1:7] == ["done", "small", "dff", "feats", "1-3", "2"] and row[7] == "local"
    assert row[9] == f"{dff_run.result['test']['NDCG@10']:.4f}"
    assert cli.main(["--db", str(db.path), "runs", "--dataset", "nope"]) == 2
    assert "no dataset 'nope'" in capsys.readouterr().err
