"""Background jobs: kill -9 mid-training then resume, cancel, concurrent enqueue, sweeps."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_helpers import ROOT, write_generic
from jobs.datasets import import_generic
from storage import queue
from jobs.handlers import expand_sweep
from storage.runs import get_run, list_runs, run_metrics

ENV = dict(os.environ, PYTHONPATH=str(ROOT))
# small but not instant: enough epochs that a kill lands in the middle of training
SETTINGS = {"epochs": 25, "patience": 0, "hidden": 16, "batch_size": 64, "max_len": 20, "num_threads": 1}


@pytest.fixture
def dataset(db, tmp_path):
    return import_generic(db, "d", *write_generic(tmp_path / "d", n_users=600, n_items=80, seq=10))


def start_worker(db, once: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jobs.worker", "--db", str(db.path)] + (["--once"] if once else [])
    return subprocess.Popen(cmd, cwd=str(ROOT), env=ENV, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, timeout: float = 120, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def val_epochs(db, run_id: int) -> list[int]:
    m = run_metrics(db, [run_id])
    return sorted(m.loc[(m.split == "val") & (m.name == "NDCG@10"), "epoch"].tolist())


def test_kill_worker_mid_training_then_resume(db, dataset):
    job_id = queue.enqueue(db, "train", {"dataset": "d", "strategy": "id", "seed": 3, "settings": SETTINGS})
    worker = start_worker(db)
    run_id = wait_for(lambda: (queue.get_job(db, job_id).result or {}).get("run_id"), what="the run to start")
    wait_for(lambda: len(val_epochs(db, run_id)) >= 3, what="three epochs")
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its job process, no chance to clean up
    worker.wait()
    done_before = len(val_epochs(db, run_id))
    assert done_before < SETTINGS["epochs"], "training finished before the kill; make it longer"

    assert wait_for(lambda: queue.mark_stale(db) or queue.get_job(db, job_id).status == "interrupted",
                    timeout=30, what="the job to be marked interrupted")
    assert queue.get_job(db, job_id).status == "interrupted"

    queue.resume(db, job_id)
    worker = start_worker(db, once=True)
    out, _ = worker.communicate(timeout=300)
    job = queue.get_job(db, job_id)
    assert job.status == "done", (job.error, job.log, out)
    assert "resuming run" in job.log
    run = get_run(db, run_id)
    assert run.status == "done" and run.epochs_run == SETTINGS["epochs"]
    # every epoch's metrics stored exactly once: no duplicates (primary key) and no gaps
    assert val_epochs(db, run_id) == list(range(1, SETTINGS["epochs"] + 1))
    m = run_metrics(db, [run_id])
    assert not m.duplicated(["epoch", "split", "name"]).any()
    assert set(m.loc[m.split == "test", "name"]) == {"HR@10", "HR@20", "NDCG@10", "NDCG@20", "MRR"}
    assert len(list_runs(db)) == 1  # the resumed job continued the same run


def test_cancel_keeps_progress_and_resume_finishes(db, dataset):
    job_id = queue.enqueue(db, "train", {"dataset": "d", "strategy": "id", "settings": SETTINGS})
    worker = start_worker(db, once=True)
    run_id = wait_for(lambda: (queue.get_job(db, job_id).result or {}).get("run_id"), what="the run to start")
    wait_for(lambda: len(val_epochs(db, run_id)) >= 2, what="two epochs")
    assert queue.request_cancel(db, job_id) == "cancel requested"
    worker.communicate(timeout=120)
    assert queue.get_job(db, job_id).status == "cancelled"
    assert get_run(db, run_id).status == "cancelled"
    kept = val_epochs(db, run_id)
    assert 2 <= len(kept) < SETTINGS["epochs"]

    queue.resume(db, job_id)
    start_worker(db, once=True).communicate(timeout=300)
    assert queue.get_job(db, job_id).status == "done"
    assert val_epochs(db, run_id) == list(range(1, SETTINGS["epochs"] + 1))
    with pytest.raises(ValueError, match="only queued or running"):
        queue.request_cancel(db, job_id)


def test_cancel_a_queued_job_and_retry_a_failed_one(db, dataset):
    a = queue.enqueue(db, "train", {"dataset": "d", "strategy": "id", "settings": {"epochs": 1}})
    assert queue.request_cancel(db, a) == "cancelled"
    b = queue.enqueue(db, "train", {"dataset": "missing", "strategy": "id"})
    start_worker(db, once=True).communicate(timeout=120)
    failed = queue.get_job(db, b)
    assert failed.status == "failed" and "no dataset 'missing'" in failed.error
    assert queue.get_job(db, a).status == "cancelled"
    queue.retry(db, b)
    assert queue.get_job(db, b).status == "queued"


def test_concurrent_enqueue_from_two_processes(db):
    code = ("import sys; from storage import Database; from storage.queue import enqueue; db = Database(sys.argv[1]); "
            "print([enqueue(db, 'train', {'i': i, 'who': sys.argv[2]}) for i in range(15)])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db.path), who], cwd=str(ROOT), env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for who in "ab"]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "lock" not in err.lower()
        ids += json.loads(out.strip().splitlines()[-1])
    assert len(ids) == len(set(ids)) == 30
    assert len(queue.list_jobs(db, status="queued")) == 30


def test_claim_is_exclusive(db):
    ids = [queue.enqueue(db, "train", {"i": i}) for i in range(3)]
    claimed = [queue.claim_next(db, 1), queue.claim_next(db, 2), queue.claim_next(db, 3), queue.claim_next(db, 4)]
    assert [j.id for j in claimed[:3]] == ids and claimed[3] is None


def test_sweep_expands_into_a_study(db, dataset):
    params = {"dataset": "d", "strategies": ["id", "id"], "layers": ["all"], "seeds": [1, 2],
              "study": "s1", "settings": {"epochs": 2, "hidden": 16, "num_threads": 1}}
    assert len(expand_sweep(params)) == 2  # duplicates collapse, id ignores layers
    assert len(expand_sweep({**params, "strategies": ["id", "dff", "gate"], "layers": ["all", "1-2"],
                             "seeds": [1, 2, 3]})) == 3 + 2 * 2 * 3
    job_id = queue.enqueue(db, "sweep", params, group="s1")
    start_worker(db, once=True).communicate(timeout=300)
    children = queue.get_job(db, job_id).result["children"]
    assert len(children) == 2
    assert all(queue.get_job(db, c).status == "done" for c in children)
    runs = list_runs(db, study="s1")
    assert sorted(r.seed for r in runs) == [1, 2] and all(r.status == "done" for r in runs)


def test_cli_submit_jobs_json(db, dataset):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "dff_core", "--db", str(db.path), *args], cwd=str(ROOT),
                              env=ENV, capture_output=True, text=True, timeout=120)

    r = cli("submit", "train", "--dataset", "d", "--strategy", "id", "--epochs", "1")
    assert r.returncode == 0, r.stderr
    job_id = int(r.stdout.strip().splitlines()[-1])
    listed = json.loads(cli("jobs", "--json").stdout)
    assert {"id": job_id, "kind": "train", "status": "queued"}.items() <= listed[0].items()
    assert listed[0]["progress"] == 0
    r = cli("submit", "train", "--dataset", "d", "--strategy", "dff", "--epochs", "1")
    assert r.returncode == 2 and "needs --features" in r.stderr and "Traceback" not in r.stderr
    r = cli("submit", "train", "--dataset", "d", "--strategy", "id", "--layer-lr-mult", "-1")
    assert r.returncode == 2 and "layer_lr_mult must be a number from 0 to 1000, not -1" in r.stderr and "Traceback" not in r.stderr
    r = cli("submit", "train", "--dataset", "d", "--strategy", "id", "--layer-lr-mult", "30", "--layer-init", "probe",
            "--threads", "1")
    assert r.returncode == 0, r.stderr
    settings = queue.get_job(db, int(r.stdout.strip().splitlines()[-1])).params["settings"]
    assert settings["layer_lr_mult"] == 30.0 and settings["layer_init"] == "probe" and settings["num_threads"] == 1
    assert cli("cancel", r.stdout.strip().splitlines()[-1]).returncode == 0
    assert cli("cancel", str(job_id)).returncode == 0
    assert queue.get_job(db, job_id).status == "cancelled"
