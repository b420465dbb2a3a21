"""The training settings every entry point starts from (CLI ``train``/``submit``/``study``, sweeps, the Train and
Study pages): ``dff_core.workflows.run_training`` fills what a request leaves out from here, so a queued job, a
sweep and a foreground run agree. ``TrainConfig``'s own defaults stay those of the original objective (full
softmax, batch 256, lr 1e-3, CPU) for library use and older checkpoints.

Why these values: ``bench/bench_time_to_quality.py`` on the full MicroLens-50k (README, "Fast path: training").
Changing the loss changes results: runs made before the sampled loss became the default used full softmax (their
stored config says so; a config without ``loss`` is full softmax).
"""
from __future__ import annotations

TRAIN_DEFAULTS: dict = {"device": "auto", "amp": "none", "loss": "full", "negatives": 256,
                        "negative_sampler": "uniform", "batch_size": 256, "lr": 1e-3}


def with_defaults(settings: dict | None) -> dict:
    """``settings`` over :data:`TRAIN_DEFAULTS` (``None`` values count as not given)."""
    return {**TRAIN_DEFAULTS, **{k: v for k, v in (settings or {}).items() if v is not None}}
