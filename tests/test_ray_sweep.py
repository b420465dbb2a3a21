"""Sweeps on a local 2-CPU Ray instance: the same metrics as the local engine (same seeds, one thread, CPU),
cancel mid-sweep keeps the finished runs and stops the rest, resume finishes only what is missing, and a
task that fails is recorded as a failed run with its reason. ``runs --json`` reads the results back.

One Ray instance serves the module (starting one costs ~10 s); the sweep job runs in this process through
``jobs.runner.run_job`` (the code path a worker's job process takes), so it joins that instance."""
from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray engine is optional: pip install -r requirements-ray.txt")

from data_helpers import dataset_with_features  # noqa: E402
import cli  # noqa: E402
from jobs.workflows import run_training  # noqa: E402
from storage import queue  # noqa: E402
from jobs.handlers import expand_sweep  # noqa: E402
from jobs.runner import run_job  # noqa: E402
from storage.runs import list_runs, run_metrics  # noqa: E402

SETTINGS = {"epochs": 3, "patience": 0, "hidden": 16, "batch_size": 64, "max_len": 10, "num_threads": 1}
SWEEP = {"dataset": "d", "features": "f", "strategies": ["id", "dff"], "layers": ["1-2"], "seeds": [1, 2]}


@pytest.fixture(scope="module")
def sweep_db(tmp_path_factory):
    """300 users over 40 items and a 4-layer, 16-d feature set ``f``."""
    return dataset_with_features(tmp_path_factory.mktemp("sweep"), n_users=300, n_items=40)


def _run_sweep_job(db, study: str, settings: dict, **extra) -> int:
    job_id = queue.enqueue(db, "sweep", {**SWEEP, "study": study, "settings": settings, "engine": "ray", **extra},
                           group=study)
    _claim_and_run(db, job_id)
    return job_id


def _claim_and_run(db, job_id: int) -> str:
    job = queue.claim_next(db, os.getpid())
    assert job is not None and job.id == job_id
    return run_job(db, job)


def _runs_json(db, capsys, *args) -> list[dict]:
    capsys.readouterr()
    assert cli.main(["--db", str(db.path), "runs", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_ray_sweep_gives_the_local_engines_metrics(local_ray, sweep_db, capsys):
    db = sweep_db
    plan = expand_sweep({**SWEEP, "study": "local", "settings": SETTINGS})
    assert len(plan) == 4
    for p in plan:
        run_training(db, "d", p["strategy"], features=p["features"], layers=p["layers"], settings=SETTINGS,
                     seed=p["seed"], study="local")
    job_id = _run_sweep_job(db, "ray", SETTINGS)
    job = queue.get_job(db, job_id)
    assert job.status == "done", (job.error, job.log)
    assert job.result["ray"] == {"total": 4, "skipped": 0, "done": 4, "failed": 0, "cancelled": 0}
    assert "children" not in job.result  # no train jobs: the runs were Ray tasks

    local = {(r["strategy"], r["seed"]): r for r in _runs_json(db, capsys, "--study", "local")}
    remote = {(r["strategy"], r["seed"]): r for r in _runs_json(db, capsys, "--study", "ray", "--dataset", "d")}
    assert set(local) == set(remote) == {("id", 1), ("id", 2), ("dff", 1), ("dff", 2)}
    for key, r in remote.items():
        assert (r["engine"], local[key]["engine"]) == ("ray", "local")
        assert r["status"] == "done" and r["dataset"] == "d" and r["study"] == "ray"
        assert r["layers"] == ([1, 2] if key[0] == "dff" else None) and r["features"] == ("f" if key[0] == "dff" else None)
        for split in ("val", "test"):
            assert set(r["metrics"][split]) == {"HR@10", "HR@20", "NDCG@10", "NDCG@20", "MRR"}
            assert r["metrics"][split] == pytest.approx(local[key]["metrics"][split], rel=1e-6, abs=1e-9)
        assert r["metrics"]["test"]["HR@20"] > 0
    # the driver stored every epoch, as the local engine does: 3 val epochs, layer weights keyed by stored layer
    m = run_metrics(db, [remote[("dff", 1)]["run_id"]])
    assert sorted(m.loc[(m.split == "val") & (m.name == "NDCG@10"), "epoch"]) == [1, 2, 3]
    assert set(m.loc[m.split == "layer_weight", "name"]) == {"1", "2"}
    lm = run_metrics(db, [local[("dff", 1)]["run_id"]])
    np.testing.assert_allclose(np.sort(m.loc[m.split == "layer_weight", "value"]),
                               np.sort(lm.loc[lm.split == "layer_weight", "value"]), rtol=1e-6)


def test_cancel_mid_sweep_then_resume_finishes_the_rest(local_ray, sweep_db):
    db = sweep_db
    slow = {**SETTINGS, "epochs": 30}
    job_id = queue.enqueue(db, "sweep", {**SWEEP, "study": "stop", "settings": slow, "engine": "ray"}, group="stop")
    status: list[str] = []
    thread = threading.Thread(target=lambda: status.append(_claim_and_run(db, job_id)))
    thread.start()
    deadline = time.monotonic() + 240
    while not any(r.status == "done" for r in list_runs(db, study="stop")):
        assert time.monotonic() < deadline and thread.is_alive(), "no run finished"
        time.sleep(0.2)
    assert queue.request_cancel(db, job_id) == "cancel requested"
    thread.join(timeout=120)
    assert status == ["cancelled"], queue.get_job(db, job_id).log
    runs = list_runs(db, study="stop")
    done_before = {r.id: r.finished_at for r in runs if r.status == "done"}
    assert 1 <= len(done_before) < 4
    assert {r.status for r in runs} <= {"done", "cancelled"}  # nothing left "running"
    assert any(r.status == "cancelled" for r in runs)

    queue.resume(db, job_id)
    assert _claim_and_run(db, job_id) == "done"
    job = queue.get_job(db, job_id)
    assert job.result["ray"]["skipped"] == len(done_before) and job.result["ray"]["done"] == 4 - len(done_before)
    runs = list_runs(db, study="stop")
    assert len(runs) == 4 and all(r.status == "done" for r in runs)  # cancelled records reused, none duplicated
    assert {r.id: r.finished_at for r in runs if r.id in done_before} == done_before  # finished runs not re-run
    for r in runs:
        m = run_metrics(db, [r.id])
        assert sorted(m.loc[(m.split == "val") & (m.name == "NDCG@10"), "epoch"]) == list(range(1, 31))


def test_a_failing_task_is_recorded_with_its_reason(local_ray, sweep_db):
    db = sweep_db
    job_id = _run_sweep_job(db, "broken", {**SETTINGS, "metric": "bogus"}, seeds=[1], strategies=["id"])
    job = queue.get_job(db, job_id)
    assert job.status == "failed" and "1 of 1 runs failed on Ray" in job.error
    (run,) = list_runs(db, study="broken")
    assert run.status == "failed" and "unknown metric 'bogus'" in run.error


def test_engine_options_are_checked(sweep_db, capsys):
    base = ["--db", str(sweep_db.path), "submit", "sweep", "--dataset", "d", "--strategies", "id", "--study", "x"]
    assert cli.main(base + ["--address", "ray://head:10001"]) == 2
    assert "add --engine ray" in capsys.readouterr().err
    assert cli.main(base + ["--engine", "ray", "--threads", "1"]) == 0
    job = queue.get_job(sweep_db, int(capsys.readouterr().out.split()[-1]))
    assert (job.params["engine"], job.params["address"], job.params["settings"]["num_threads"]) == ("ray", None, 1)
    queue.request_cancel(sweep_db, job.id)
