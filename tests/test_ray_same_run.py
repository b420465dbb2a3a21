"""Both engines train the same run (``jobs.run_settings.plan_run``): a DFF run with ``layer_init=probe`` trains
under Ray with the local engine's probe scores and numbers, a Ray run keeps its checkpoint and item vectors like
a local one (Explore opens it), a reused Ray run record keeps nothing of its last attempt, and the driver writes
only under its job's claim.

One local 2-CPU Ray instance serves the module (``local_ray``)."""
from __future__ import annotations

import os

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray engine is optional: pip install -r requirements-ray.txt")

from data_helpers import dataset_with_features  # noqa: E402
from jobs.handlers import expand_sweep  # noqa: E402
from jobs.neighbours.models import stored_run_vectors  # noqa: E402
from jobs.neighbours.sources import available_sources  # noqa: E402
from jobs.ray_sweep import run_sweep_ray  # noqa: E402
from jobs.run_settings import plan_run  # noqa: E402
from jobs.workflows import run_training  # noqa: E402
from storage import queue  # noqa: E402
from storage.datasets import get_dataset  # noqa: E402
from storage.owners import NotOwner, Owner  # noqa: E402
from storage.runs import list_runs, run_metrics  # noqa: E402

SETTINGS = {"epochs": 2, "patience": 0, "hidden": 16, "batch_size": 64, "max_len": 10, "num_threads": 1,
            "device": "cpu", "amp": "none"}


@pytest.fixture(scope="module")
def same_db(tmp_path_factory):
    """200 users over 30 items and a 4-layer, 16-d feature set ``f``."""
    return dataset_with_features(tmp_path_factory.mktemp("same"), n_users=200, n_items=30)


def _sweep(study: str, settings: dict, strategies=("dff",), layers=("1-3",), seeds=(1,)) -> list[dict]:
    return expand_sweep({"dataset": "d", "features": "f", "strategies": list(strategies), "layers": list(layers),
                         "seeds": list(seeds), "study": study, "settings": settings})


def test_dff_with_probe_init_trains_under_ray_as_it_does_locally(local_ray, same_db):
    db = same_db
    probe = {**SETTINGS, "layer_init": "probe"}
    (p,) = _sweep("probe-ray", probe)
    local = run_training(db, "d", "dff", features="f", layers="1-3", settings=probe, seed=1, study="probe-local")
    out = run_sweep_ray(db, [p], study="probe-ray", job_id=None)
    assert out["done"] == 1 and out["failed"] == 0, out
    (remote,) = list_runs(db, study="probe-ray")
    scores = plan_run(db, get_dataset(db, "d"), "dff", features="f", layers="1-3", settings=probe).cfg.layer_scores
    assert len(scores) == 3 and remote.config["layer_scores"] == pytest.approx(scores)
    assert local.config["layer_scores"] == pytest.approx(scores)
    # one function built both: the stored configs differ only in where the run trained
    differ = {k for k in local.config if local.config[k] != remote.config.get(k)}
    assert differ <= {"engine", "device", "amp"}, differ
    assert remote.result["test"] == pytest.approx(local.result["test"], rel=1e-6, abs=1e-9)


def test_a_ray_run_keeps_its_vectors_and_explore_lists_it(local_ray, same_db):
    db = same_db
    (p,) = _sweep("vec-ray", SETTINGS, strategies=("gate",), layers=("2",))
    local = run_training(db, "d", "gate", features="f", layers="2", settings=SETTINGS, seed=1, study="vec-local")
    assert run_sweep_ray(db, [p], study="vec-ray")["done"] == 1
    (remote,) = list_runs(db, study="vec-ray")
    vectors = stored_run_vectors(db, remote.id)
    assert vectors is not None and vectors.shape == (30, 16)
    np.testing.assert_allclose(vectors, stored_run_vectors(db, local.id), rtol=1e-5, atol=1e-6)
    assert remote.id in {r.id for kind, r in available_sources(db, "d") if kind == "run"}


def test_a_reused_ray_run_record_keeps_nothing_of_its_last_attempt(local_ray, same_db):
    """The first attempt fails (a bad metric) and leaves its record ``failed`` with its settings and error; the
    resumed sweep reuses the record with this attempt's settings, epochs and outcome only."""
    db = same_db
    job_id = queue.enqueue(db, "sweep", {"dataset": "d", "study": "reuse"})
    bad = run_sweep_ray(db, _sweep("reuse", {**SETTINGS, "metric": "bogus"}, strategies=("id",)), study="reuse",
                        job_id=job_id)
    (first,) = list_runs(db, study="reuse")
    assert bad["failed"] == 1 and first.status == "failed" and first.config["metric"] == "bogus"
    good = run_sweep_ray(db, _sweep("reuse", {**SETTINGS, "hidden": 8}, strategies=("id",)), study="reuse",
                         job_id=job_id)
    (again,) = list_runs(db, study="reuse")
    assert good["done"] == 1 and again.id == first.id and again.status == "done"
    assert (again.config["metric"], again.config["hidden"], again.error) == ("NDCG@10", 8, None)
    m = run_metrics(db, [again.id])
    assert sorted(m.loc[(m.split == "val") & (m.name == "NDCG@10"), "epoch"]) == [1, 2]
    assert stored_run_vectors(db, again.id).shape == (30, 8)
    queue.request_cancel(db, job_id)  # the job only named the runs' owner; it leaves the queue


def test_the_ray_driver_writes_only_under_its_jobs_claim(local_ray, same_db):
    db = same_db
    job_id = queue.enqueue(db, "sweep", {"dataset": "d", "study": "fenced"})
    job = queue.claim_next(db, os.getpid())
    assert job.id == job_id
    stale = Owner(job.id, "a-claim-that-was-replaced")
    with pytest.raises(NotOwner):
        run_sweep_ray(db, _sweep("fenced", SETTINGS, strategies=("id",)), study="fenced", job_id=job.id,
                      owner=stale)
    assert list_runs(db, study="fenced") == []
