"""A resumed run continues with its own stored settings, minus the device-like ones (``jobs.resume``)."""
from __future__ import annotations

import pytest

from data_helpers import write_generic
from jobs.datasets import import_generic
from jobs.resume import BEFORE_IT_EXISTED, resumed_settings

FIELDS = ("epochs", "batch_size", "lr", "loss", "negatives", "negative_sampler", "layer_lr_mult", "layer_init",
          "device", "num_threads", "amp", "hidden", "strategy", "layers", "seed")


@pytest.fixture
def dataset(db, tmp_path):
    return import_generic(db, "d", *write_generic(tmp_path / "d", n_users=30, n_items=20, seq=7))


def test_stored_settings_win_device_settings_follow_the_request():
    stored = {"epochs": 7, "loss": "sampled", "negatives": 32, "hidden": 16, "device": "cuda:0", "num_threads": 8,
              "strategy": "dff", "layers": [1, 2], "feature_set": "f", "engine": "local"}
    out = resumed_settings(stored, {"device": "cpu", "loss": "full", "hidden": 64, "num_threads": None}, FIELDS)
    assert out["loss"] == "sampled" and out["negatives"] == 32 and out["hidden"] == 16 and out["epochs"] == 7
    assert out["device"] == "cpu" and "num_threads" not in out
    assert not {"strategy", "layers", "feature_set", "engine"} & set(out)


def test_a_setting_added_since_takes_its_old_meaning_not_todays_default():
    out = resumed_settings({"epochs": 5, "batch_size": 256, "lr": 1e-3}, {}, FIELDS)
    assert {k: out[k] for k in ("loss", "negatives", "negative_sampler", "layer_init")} == \
        {k: BEFORE_IT_EXISTED[k] for k in ("loss", "negatives", "negative_sampler", "layer_init")}


def test_a_run_resumed_after_its_request_lost_its_settings_finishes_as_started(db, dataset):
    """The job's request no longer carries the model size and the loss (today's defaults differ): the resume
    rebuilds the run from its stored config, so the checkpoint fits and the run ends as it started."""
    from jobs.workflows import run_training

    calls = {"n": 0}

    def stop_after_a_while() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    started = {"epochs": 3, "hidden": 16, "loss": "sampled", "negatives": 8, "device": "cpu"}
    first = run_training(db, "d", "id", settings=started, seed=1, should_stop=stop_after_a_while)
    assert first.status == "cancelled"
    resumed = run_training(db, "d", "id", settings={"device": "cpu"}, seed=1, run_id=first.id)
    assert resumed.status == "done" and resumed.epochs_run == 3
    assert (resumed.config["hidden"], resumed.config["loss"], resumed.config["negatives"]) == (16, "sampled", 8)
