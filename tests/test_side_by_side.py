"""Training runs side by side (``jobs.worker``): two at once while every running job is a training run, never ahead
of an older queued job of another kind, only with the memory for both; each on its share of the cores; the runs
record it and the estimate prices a batch by it (``dff_core.estimates``)."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from data_helpers import ROOT, write_generic
from dff_core.estimates import SIDE_BY_SIDE_SPEEDUP, alone_epoch_seconds, estimate_text, training_estimate
from jobs import worker
from jobs.datasets import import_generic
from storage import queue
from storage.runs import list_runs

SETTINGS = {"epochs": 6, "patience": 0, "hidden": 16, "batch_size": 64, "max_len": 20}


def test_a_side_slot_claims_only_a_training_run_at_the_head_of_the_queue(db):
    ext = queue.enqueue(db, "extract", {"x": 1})
    tr = queue.enqueue(db, "train", {"x": 2})
    assert queue.next_queued(db).id == ext
    assert queue.claim_next(db, 1, kinds=("train",), head_only=True) is None     # the extraction comes first
    assert queue.get_job(db, tr).status == "queued"
    assert queue.claim_next(db, 1, kinds=("train",)).id == tr                    # without head_only: skips ahead
    queue.finish(db, tr, "done")
    tr2 = queue.enqueue(db, "train", {"x": 3})
    assert queue.claim_next(db, 1).id == ext
    assert queue.next_queued(db).id == tr2
    assert queue.claim_next(db, 1, kinds=("train",), head_only=True).id == tr2
    assert queue.next_queued(db) is None


def _job(kind: str, params: dict | None = None) -> queue.Job:
    return queue.Job(id=1, kind=kind, params=params or {}, status="running", progress=0.0, step=None,
                     eta_seconds=None, result=None, error=None, log="", group_name=None, parent_id=None,
                     worker_pid=None, cancel_requested=False, created_at=None, started_at=None, finished_at=None,
                     heartbeat=None, owner=None, claim_token=None)


def test_runner_env_gives_a_partnered_run_its_share_of_the_cores(db, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(worker, "cpu_count", lambda: 4)
    base = {"A": "1"}
    queue.enqueue(db, "train", {})
    env = worker._runner_env(base, db, _job("train"), [], 2)                # a training run is next in the queue
    assert env["OMP_NUM_THREADS"] == "2" and env[worker.SIDE_BY_SIDE_ENV] == "2" and env["A"] == "1"
    assert worker._runner_env(base, db, _job("train"), [], 1) is base           # side by side off: untouched
    assert worker._runner_env(base, db, _job("extract"), [], 2) is base         # only training runs
    queue.claim_next(db, 1)                                                     # nothing queued now
    alone = worker._runner_env(base, db, _job("train"), [], 2)
    assert "OMP_NUM_THREADS" not in alone and alone[worker.SIDE_BY_SIDE_ENV] == "1"   # alone: every core
    beside = worker._runner_env(base, db, _job("train"), [_job("train")], 2)   # a partner already runs
    assert beside["OMP_NUM_THREADS"] == "2" and beside[worker.SIDE_BY_SIDE_ENV] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")                                   # the user's choice stands
    assert "OMP_NUM_THREADS" not in worker._runner_env(base, db, _job("train"), [_job("train")], 2)
    monkeypatch.setattr(worker, "cpu_count", lambda: 1)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert worker._runner_env(base, db, _job("train"), [_job("train")], 2)["OMP_NUM_THREADS"] == "1"


def test_the_counts_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("DFF_TRAIN_SIDE_BY_SIDE", raising=False)
    monkeypatch.delenv(worker.SIDE_BY_SIDE_ENV, raising=False)
    assert (worker.train_slots(), worker.side_by_side_now()) == (2, 1)          # the defaults
    monkeypatch.setenv("DFF_TRAIN_SIDE_BY_SIDE", "3")
    monkeypatch.setenv(worker.SIDE_BY_SIDE_ENV, "2")
    assert (worker.train_slots(), worker.side_by_side_now()) == (3, 2)
    monkeypatch.setenv("DFF_TRAIN_SIDE_BY_SIDE", "0")                           # at least one
    monkeypatch.setenv(worker.SIDE_BY_SIDE_ENV, "two")                          # not a count: one at a time
    assert (worker.train_slots(), worker.side_by_side_now()) == (1, 1)


def test_a_second_run_starts_only_with_memory_for_both(db, tmp_path, monkeypatch):
    import_generic(db, "d", *write_generic(tmp_path / "d", n_users=30, n_items=20))
    running = [(_job("train", {"dataset": "d", "strategy": "id"}), os.getpid())]
    assert worker.run_bytes(db, running[0][0]) == worker.BASE_RUN_BYTES
    queue.enqueue(db, "train", {"dataset": "d", "strategy": "id"})
    assert worker.resident_bytes(os.getpid()) > 0 and worker.resident_bytes(-1) == 0
    monkeypatch.setattr(worker, "resident_bytes", lambda pid: 1 << 29)          # the running one holds 0.5 GiB
    growth = worker.BASE_RUN_BYTES - (1 << 29)                                  # and may grow by the rest
    monkeypatch.setattr(worker, "available_memory", lambda: worker.BASE_RUN_BYTES + growth)
    assert worker._may_add_training_run(db, running)
    monkeypatch.setattr(worker, "available_memory", lambda: worker.BASE_RUN_BYTES + growth - (1 << 20))
    assert not worker._may_add_training_run(db, running)
    monkeypatch.setattr(worker, "available_memory", lambda: None)              # unknown: one at a time
    assert not worker._may_add_training_run(db, running)
    monkeypatch.setattr(worker, "available_memory", lambda: 1 << 50)
    assert not worker._may_add_training_run(db, [])                             # nothing to pair with
    assert not worker._may_add_training_run(db, running + [(_job("extract"), os.getpid())])
    queue.claim_next(db, 1)
    queue.enqueue(db, "extract", {})
    assert not worker._may_add_training_run(db, running)                        # the head is not a training run
    # a fusion run is priced by its features: items x layers x dim at 4 bytes
    fused = _job("train", {"dataset": "d", "strategy": "dff", "features": "missing", "layers": "all"})
    assert worker.run_bytes(db, fused) == 4 * worker.BASE_RUN_BYTES             # unknown set: room to spare


def _overlap(db, ids: list[int]) -> bool:
    jobs = [queue.get_job(db, i) for i in ids]
    (a, b) = sorted(jobs, key=lambda j: pd.Timestamp(j.started_at))
    return pd.Timestamp(b.started_at) < pd.Timestamp(a.finished_at)


@pytest.mark.parametrize("slots", [2, 1])
def test_the_worker_trains_two_runs_side_by_side(db, tmp_path, slots):
    import_generic(db, "d", *write_generic(tmp_path / "d", n_users=400, n_items=60, seq=10))
    ids = [queue.enqueue(db, "train", {"dataset": "d", "strategy": "id", "seed": s, "settings": SETTINGS})
           for s in (1, 2)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), DFF_TRAIN_SIDE_BY_SIDE=str(slots))
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-m", "jobs.worker", "--db", str(db.path), "--once"], cwd=str(ROOT),
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [queue.get_job(db, i).status for i in ids] == ["done", "done"]
    runs = list_runs(db)
    assert sorted(r.seed for r in runs) == [1, 2] and all(r.status == "done" for r in runs)
    assert [r.result["side_by_side"] for r in runs] == [slots, slots]
    assert _overlap(db, ids) == (slots == 2)


def test_the_estimate_prices_a_batch_side_by_side():
    kw = dict(users=50_000, items=19_220, targets=208_562, amp="bf16", batch_size=1024, epochs_needed=[20],
              epoch_seconds={"id": [10.0], "features": []})
    one = training_estimate(["id"] * 4, **kw)
    two = training_estimate(["id"] * 4, side_by_side=2, **kw)
    assert one["seconds"] == pytest.approx(4 * 20 * 10.0) and one["side_by_side"] == 1
    assert two["seconds"] == pytest.approx(4 * 20 * 10.0 / SIDE_BY_SIDE_SPEEDUP) and two["side_by_side"] == 2
    assert training_estimate(["id"], side_by_side=2, **kw)["side_by_side"] == 1     # a single run is alone
    assert training_estimate(["id"] * 4, side_by_side=2, on_cpu=False, **kw)["seconds"] == pytest.approx(800.0)
    assert "2 side by side" in estimate_text(two) and "side by side" not in estimate_text(one)
    # a run that trained beside another took longer an epoch than it would alone
    assert alone_epoch_seconds(13.3, 2) == pytest.approx(13.3 * SIDE_BY_SIDE_SPEEDUP / 2)
    assert alone_epoch_seconds(9.4, 1) == 9.4 and alone_epoch_seconds(13.3, 2, on_cpu=False) == pytest.approx(6.65)


def test_training_cost_reads_a_paired_runs_epochs_as_alone_seconds(db, tmp_path):
    from jobs.estimates import training_cost
    from storage.runs import create_run, finish_run

    ds = import_generic(db, "d", *write_generic(tmp_path / "d", n_users=30, n_items=20, seq=7))
    cfg = {"batch_size": 256, "lr": 1e-3, "loss": "full", "amp": "none", "device": "cpu"}
    run = create_run(db, ds.id, "id", cfg)
    finish_run(db, run.id, "done", result={"side_by_side": 2}, best_epoch=5, epochs_run=10, seconds=100.0,
               ending="early_stopped")                                   # 10 s an epoch beside another run
    est = training_cost(db, "d", ["id"] * 3, cfg, side_by_side=2)
    alone = 10.0 * SIDE_BY_SIDE_SPEEDUP / 2
    assert est["seconds_per_epoch"]["id"] == pytest.approx(alone)
    assert est["seconds"] == pytest.approx(3 * 10 * alone / SIDE_BY_SIDE_SPEEDUP) and est["side_by_side"] == 2
    assert training_cost(db, "d", ["id"] * 3, cfg, side_by_side=1)["seconds"] == pytest.approx(3 * 10 * alone)
