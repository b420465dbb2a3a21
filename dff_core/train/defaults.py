"""The training settings every entry point starts from (CLI ``train``/``submit``/``study``, sweeps, the Train and
Study pages): ``jobs.workflows.run_training`` fills what a request leaves out from here, so a queued job, a
sweep and a foreground run agree. ``TrainConfig``'s own defaults stay those of the original objective (full
softmax, batch 256, lr 1e-3, CPU) for library use and older checkpoints.

Why these values: ``bench/bench_time_to_quality.py`` (README, "Fast path: training"). On the full MicroLens-50k
(19,220 items) sampled softmax with 256 uniform negatives converged in 31 min at test NDCG@10 0.0322, 21 % below
full softmax's 0.0410 (capped at 75 min, still rising); on a 3,000-item catalogue the two take about the same time
and full softmax ends 3-5 % higher. So full softmax is the default; ``--loss sampled`` is an opt-in for a quick
first model. Batch 256 / lr 1e-3 stay for now: batch 1024 / lr 3e-3 reached the same validation NDCG 1.3x sooner
on the full catalogue and converged 17.7 % higher on the 3,000-item set, but no full-softmax run converged on the
full catalogue in the time measured, and it would give a small dataset (the demo's 2,000 users) two updates per
epoch.
A stored config without ``loss`` is full softmax (runs from before the option).
"""
from __future__ import annotations

CHECKPOINT_NAME = "checkpoint.pt"  # a run's checkpoint file: here, so finding one (Explore's sources) needs no torch

# the choices each setting takes: here, without torch, so the pages and the CLI can list them without loading it
LOSSES = ("full", "sampled")
SAMPLERS = ("uniform", "in-batch")
AMP_CHOICES = ("none", "bf16")
LAYER_INITS = ("uniform", "probe")
LAYER_LR_MULT = 10.0  # TrainConfig.layer_lr_mult (README, "DFF layer weights: do they learn?")

TRAIN_DEFAULTS: dict = {"device": "auto", "amp": "none", "loss": "full", "negatives": 256,
                        "negative_sampler": "uniform", "batch_size": 256, "lr": 1e-3}


def with_defaults(settings: dict | None) -> dict:
    """``settings`` over :data:`TRAIN_DEFAULTS` (``None`` values count as not given)."""
    return {**TRAIN_DEFAULTS, **{k: v for k, v in (settings or {}).items() if v is not None}}
