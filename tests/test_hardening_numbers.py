"""Numbers that used to fail only in the worker: every setting has a range (``dff_core.limits``) checked by the one
validator (``jobs.submit``), and a run's estimated memory is checked against the machine before it is queued."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from data_helpers import ROOT, write_generic
from dff_core.limits import TRAIN_RANGES, check_ranges, train_memory_bytes
from jobs.datasets import import_generic
from jobs.submit import check_memory, enqueue_sweep, enqueue_train
from storage.queue import list_jobs
from storage.runs import list_runs


@pytest.fixture
def small(db, tmp_path):
    inter, items = write_generic(tmp_path / "d")
    return import_generic(db, "small", inter, items)


@pytest.mark.parametrize("settings, seed, message", [
    ({"num_threads": -1}, 1, "threads must be a whole number from 1 to 1024, not -1"),
    ({"dropout": 5.0}, 1, "dropout must be a number from 0 to 0.99, not 5"),
    ({"lr": float("nan")}, 1, "lr must be a number from 0 to 10, not nan"),
    ({"lr": -1.0}, 1, "lr must be a number from 0 to 10, not -1"),
    ({}, 99999999999999999999, "seed must be a whole number from 0 to 2147483647"),
    ({"hidden": 100_000_000}, 1, "hidden must be a whole number from 1 to 4096, not 100000000"),
    ({"max_len": 100_000_000}, 1, "max_len must be a whole number from 1 to 4096"),
    ({"loss": "sampled", "negatives": 1_000_000_000}, 1, "negatives must be a whole number from 1 to 100000"),
    ({"hidden": 64, "heads": 3}, 1, "hidden (64) must be a multiple of heads (3)"),
    ({"batch_size": 0}, 1, "batch_size must be a whole number from 1 to 65536, not 0"),
])
def test_out_of_range_settings_are_refused_before_queueing(db, small, settings, seed, message):
    with pytest.raises(ValueError) as err:
        enqueue_train(db, "small", "id", None, None, settings, seed=seed)
    assert str(err.value).startswith(message)
    with pytest.raises(ValueError, match="must be"):
        enqueue_sweep(db, "small", None, ["id"], ["all"], [seed], "s", settings)
    assert list_jobs(db) == []


def test_every_range_bounds_its_setting():
    for name, (lo, hi, integer) in TRAIN_RANGES.items():
        check_ranges({name: lo}, TRAIN_RANGES)
        check_ranges({name: hi}, TRAIN_RANGES)
        for bad in (lo - 1, hi * 2 + 1, float("inf")):
            with pytest.raises(ValueError, match="must be"):
                check_ranges({name: bad}, TRAIN_RANGES)


def test_memory_estimate_refuses_a_run_the_machine_cannot_hold(db, small, monkeypatch):
    import dff_core.limits as limits

    monkeypatch.setattr(limits, "machine_memory_bytes", lambda device: 16 * 2**30)
    huge = {"loss": "sampled", "negatives": 100_000, "batch_size": 256, "hidden": 64, "max_len": 50}
    needed = train_memory_bytes({**huge, "blocks": 2, "heads": 1}, num_items=20)
    # gathered negatives 256 x 100,000 x 64 and logits 256 x 50 x 100,000, float32, with their gradients
    assert needed >= 2 * (256 * 100_000 * 64 + 256 * 50 * 100_000) * 4
    with pytest.raises(ValueError) as err:
        enqueue_train(db, "small", "id", None, None, huge, seed=1)
    assert str(err.value).startswith(f"this run would need about {needed / 2**30:.1f} GB of memory, more than 80% "
                                     "of this machine's 16.0 GB")
    assert list_jobs(db) == []
    assert check_memory({"loss": "sampled", "negatives": 256}, small.stats, None) < 2**30
    assert enqueue_train(db, "small", "id", None, None, {"loss": "sampled", "negatives": 256}, seed=1) > 0


def test_extraction_numbers_are_refused_before_queueing(db, small):
    from jobs.submit import extract_job_params

    for kwargs, message in (({"frame_size": 0}, "frame_size must be a whole number from 16 to 2048, not 0"),
                            ({"num_frames": -3}, "frames must be a whole number from 1 to 256, not -3"),
                            ({"batch_size": 10**9}, "batch_size must be a whole number from 1 to 4096")):
        with pytest.raises(ValueError) as err:
            extract_job_params(db, "small", "minilm", "f", **kwargs)
        assert str(err.value).startswith(message)


def _cli(db_path, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "dff_core", "--db", str(db_path), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("flags, message", [
    (["--hidden", "100000000"], "error: hidden must be a whole number from 1 to 4096"),
    (["--loss", "sampled", "--negatives", "1000000000"], "error: negatives must be a whole number from 1 to 100000"),
    (["--seed", "99999999999999999999"], "error: seed must be a whole number from 0 to 2147483647"),
])
def test_foreground_train_refuses_in_one_line_and_stores_no_run(db, small, flags, message):
    out = _cli(db.path, "train", "--dataset", "small", "--strategy", "id", "--epochs", "1", *flags)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and out.stderr.startswith(message)
    assert "Traceback" not in out.stderr
    assert list_runs(db) == []


def test_full_softmax_estimate_covers_one_batch_block_over_the_whole_catalogue():
    base = {"loss": "full", "batch_size": 1024, "hidden": 64, "max_len": 50, "blocks": 2, "heads": 1}
    # MicroLens-50k's shape: mean sequence 7.2 -> ~4.2 targets a user; the CPU keeps [~4,300 x 19,221] exponentials
    ml = train_memory_bytes(base, 19_220, mean_seq_len=7.19)
    kept = 4_300 * 19_221 * 2
    assert 2 * kept < ml < 3 * 2**30
    # no stats: every position of the batch may hold a target
    assert train_memory_bytes(base, 19_220) >= 2 * 1024 * 50 * 19_221 * 4
    # no cap on the catalogue: five times the items, about five times the loss's block
    big = train_memory_bytes(base, 5 * 19_220, mean_seq_len=7.19)
    assert big > 4 * (ml - train_memory_bytes({**base, "batch_size": 1}, 19_220, mean_seq_len=7.19))
