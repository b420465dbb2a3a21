"""``export-runs --mlflow FOLDER`` writes MLflow's recommended store, a SQLite database in that folder, which
MLflow 3 opens with no opt-in variable (its file store needs MLFLOW_ALLOW_FILE_STORE): read back here with
``mlflow.MlflowClient`` on ``sqlite:///FOLDER/mlflow.db``, the URI ``mlflow ui --backend-store-uri`` takes."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("mlflow", reason="the MLflow export is optional: pip install -r requirements-mlflow.txt")

import cli  # noqa: E402
from data_helpers import ROOT, dataset_with_features  # noqa: E402

SETTINGS = {"epochs": 2, "patience": 0, "hidden": 8, "batch_size": 32, "max_len": 6, "num_threads": 1}


@pytest.fixture(scope="module")
def runs_db(tmp_path_factory):
    from jobs.workflows import run_training

    db = dataset_with_features(tmp_path_factory.mktemp("conv_mlflow"), n_users=40, n_items=20, seq=6, layers=3, dim=8,
                               dataset="small", features="feats", backbone="synthetic", db_file="r.duckdb")
    runs = [run_training(db, "small", "id", settings=SETTINGS, seed=1, study="s"),
            run_training(db, "small", "dff", features="feats", layers="1-2", settings=SETTINGS, seed=2, study="s")]
    assert [r.status for r in runs] == ["done", "done"]
    return db, runs


def test_folder_export_is_a_sqlite_store_mlflow_opens_without_opt_in(runs_db, tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    db, (id_run, dff_run) = runs_db
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # nothing may land in the folder the export runs from (MLflow's ./mlruns)
    folder = tmp_path / "exported"

    assert cli.main(["--db", str(db.path), "export-runs", "--mlflow", str(folder)]) == 0
    out = capsys.readouterr()
    uri = f"sqlite:///{(folder / 'mlflow.db').resolve().as_posix()}"
    assert f"exported 2 runs to {uri} (2 new, 0 updated)" in out.out
    assert f"mlflow ui --backend-store-uri {uri}" in out.out
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # no opt-in was needed, none was made
    assert "Creating initial MLflow database tables" not in out.err  # the CLI prints its lines, not MLflow's INFO
    assert (folder / "mlflow.db").is_file() and list(elsewhere.iterdir()) == []

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("dff-small")
    assert exp.artifact_location == (folder / "artifacts" / "dff-small").resolve().as_uri()
    got = {int(r.data.tags["dff.run_id"]): r for r in client.search_runs([exp.experiment_id])}
    assert set(got) == {id_run.id, dff_run.id}
    r = got[dff_run.id]
    assert r.info.status == "FINISHED" and r.data.params["strategy"] == "dff" and r.data.params["layers"] == "1-2"
    assert r.data.metrics["test_NDCG_at_10"] == pytest.approx(dff_run.result["test"]["NDCG@10"])
    assert sorted(m.step for m in client.get_metric_history(r.info.run_id, "train_loss")) == [1, 2]

    # again: updated in place, nothing doubled
    assert cli.main(["--db", str(db.path), "export-runs", "--mlflow", str(folder)]) == 0
    assert "(0 new, 2 updated)" in capsys.readouterr().out
    assert len(client.search_runs([exp.experiment_id])) == 2
    assert len(client.get_metric_history(r.info.run_id, "train_loss")) == 2


def test_a_fresh_mlflow_process_reads_the_folder_without_any_variable(runs_db, tmp_path):
    """What `mlflow ui --backend-store-uri sqlite:///FOLDER/mlflow.db` does: MLflow alone, a clean environment."""
    db, runs = runs_db
    folder = tmp_path / "mlruns"
    assert cli.main(["--db", str(db.path), "export-runs", "--mlflow", str(folder), "--study", "s"]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    script = ("import sys; from mlflow import MlflowClient\n"
              "c = MlflowClient(tracking_uri=sys.argv[1])\n"
              "e = c.get_experiment_by_name('dff-small')\n"
              "print(sorted(int(r.data.tags['dff.run_id']) for r in c.search_runs([e.experiment_id])))\n")
    res = subprocess.run([sys.executable, "-c", script, f"sqlite:///{(folder / 'mlflow.db').as_posix()}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == str(sorted(r.id for r in runs))


def test_readme_shows_mlflow_ui_on_the_store():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "mlflow ui --backend-store-uri sqlite:///" in text


def test_a_folder_export_without_alembic_is_one_line(runs_db, tmp_path, monkeypatch, capsys):
    """The SQLite store needs alembic (MLflow migrates its schema with it): without it, one line, exit 2."""
    db, _ = runs_db
    monkeypatch.setitem(sys.modules, "alembic", None)  # as if not installed: importing it raises ImportError
    assert cli.main(["--db", str(db.path), "export-runs", "--mlflow", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: a SQLite MLflow store needs alembic: pip install -r requirements-mlflow.txt"]
