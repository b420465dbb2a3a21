"""The trainer's side of "one writer per run" and of "an old checkpoint resumes or is refused in one line":
``train(may_write=...)`` skips checkpoint saves once the runner lost its job, ``_check_resumable`` refuses a DFF
checkpoint from before ``layer_lr_mult`` and reads a missing setting with the value such runs trained with
(``jobs.resume.BEFORE_IT_EXISTED``, passed in by ``jobs.workflows.run_training``)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import sqlalchemy as sa
import torch

from data_helpers import write_generic
from dff_core.data.split import leave_one_out
from dff_core.train import TrainConfig, train
from dff_core.train.trainer import CHECKPOINT_NAME
from jobs.datasets import import_generic
from jobs.workflows import run_training
from storage import queue
from storage.owners import NotOwner, Owner
from storage.runs import checkpoint_dir, get_run


def _data():
    rng = np.random.default_rng(0)
    seqs = [rng.choice(30, size=6, replace=False) for _ in range(40)]
    return leave_one_out(seqs, 30), rng.normal(size=(30, 3, 8)).astype(np.float32)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 16, "hidden": 16, "blocks": 1, "max_len": 6,
                          "num_threads": 1, **kw})


def _stop_after(n: int):
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > n
    return stop


@pytest.fixture
def dataset(db, tmp_path):
    return import_generic(db, "d", *write_generic(tmp_path / "d", n_users=40, n_items=20, seq=6))


def test_may_write_false_writes_no_checkpoint(tmp_path):
    data, _ = _data()
    kept = train(data, _cfg(), checkpoint_dir=tmp_path / "yes", may_write=lambda: True)
    fenced = train(data, _cfg(), checkpoint_dir=tmp_path / "no", may_write=lambda: False)
    assert (tmp_path / "yes" / CHECKPOINT_NAME).exists()
    assert not (tmp_path / "no").exists() or not list((tmp_path / "no").iterdir())
    assert fenced.test == kept.test  # the fence changes what is written, never what is trained


def test_a_dff_checkpoint_from_before_layer_lr_mult_is_refused_in_one_line(tmp_path):
    data, feats = _data()
    part = train(data, _cfg(strategy="dff"), feats, checkpoint_dir=tmp_path, should_stop=_stop_after(3))
    assert part.cancelled
    path = tmp_path / CHECKPOINT_NAME
    saved = torch.load(path, map_location="cpu", weights_only=True)
    # as such checkpoints were written: no layer_lr_mult, the layer logits in the model's one optimizer group
    del saved["config"]["layer_lr_mult"]
    groups = saved["optimizer"]["param_groups"]
    saved["optimizer"]["param_groups"] = [{**groups[0], "params": groups[0]["params"] + groups[1]["params"]}]
    torch.save(saved, path)
    with pytest.raises(ValueError) as err:
        train(data, _cfg(strategy="dff"), feats, checkpoint_dir=tmp_path)
    message = str(err.value)
    assert "layer_lr_mult" in message and "train the run again" in message and "\n" not in message


def test_an_old_run_resumes_with_the_values_it_trained_with(db, dataset):
    """A run stored before ``batching`` and ``layer_lr_mult`` existed: its config and its checkpoint lack both.
    The resume rebuilds it with the old values (random batches, one learning rate) and the trainer, told those
    values by the caller, accepts the checkpoint instead of today's defaults (length batches, x10)."""
    first = run_training(db, "d", "id", settings={"epochs": 2, "hidden": 16, "device": "cpu", "batching": "random", "batch_size": 8,
                                                  "num_threads": 1}, seed=1, should_stop=_stop_after(2))
    assert first.status == "cancelled"
    config = {k: v for k, v in first.config.items() if k not in ("batching", "layer_lr_mult")}
    with db.session() as conn:
        conn.execute(sa.text("UPDATE runs SET config = :c WHERE id = :i"), {"c": json.dumps(config), "i": first.id})
    path = checkpoint_dir(db, first.id) / CHECKPOINT_NAME
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("batching", "layer_lr_mult"):
        del saved["config"][key]
    torch.save(saved, path)
    resumed = run_training(db, "d", "id", settings={"device": "cpu"}, seed=1, run_id=first.id)
    assert resumed.status == "done" and resumed.epochs_run == 2
    after = torch.load(path, map_location="cpu", weights_only=True)["config"]
    assert (after["batching"], after["layer_lr_mult"]) == ("random", 1.0)
    assert (resumed.config["batching"], resumed.config["layer_lr_mult"]) == ("random", 1.0)  # the record says so


def test_a_runner_that_lost_its_job_leaves_the_checkpoint_alone(db, dataset):
    """The job is taken over (a new claim) while its first runner trains: that runner's cancel-time save is the
    next write it would make, and it writes no checkpoint the new owner would then resume from."""
    job_id = queue.enqueue(db, "train", {"dataset": "d", "strategy": "id"})
    job = queue.claim_next(db, os.getpid())
    assert job.id == job_id
    owner = Owner(job.id, job.claim_token)
    seen: dict = {}

    def taken_over() -> bool:
        if not seen:
            with db.session() as conn:
                conn.execute(sa.text("UPDATE jobs SET claim_token = 'someone-else' WHERE id = :i"), {"i": job.id})
            seen["run"] = True
        return True  # the lost runner stops: its graceful stop saves a checkpoint, unless fenced

    runs: list[int] = []
    with pytest.raises(NotOwner):
        run_training(db, "d", "id", settings={"epochs": 2, "hidden": 16, "device": "cpu", "num_threads": 1},
                     seed=1, job_id=job.id, owner=owner, should_stop=taken_over, on_run=runs.append)
    assert not (checkpoint_dir(db, runs[0]) / CHECKPOINT_NAME).exists()
    assert get_run(db, runs[0]).status == "running"  # left to the new owner, untouched
