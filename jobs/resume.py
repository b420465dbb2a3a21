"""The settings a resumed training run continues with: its own, as stored when it started.

Contract: ``resumed_settings(stored_config, requested)`` returns the run's stored ``TrainConfig`` settings,
minus the device-like ones (where and how fast it computes: ``DEVICE_LIKE``), which come from today's request.
A setting the stored config lacks because the run started before the setting existed takes the value that
reproduces how such runs trained then (``BEFORE_IT_EXISTED``), never today's default.

Why: the checkpoint holds a model and an optimizer built from those settings; rebuilding them from today's
defaults (a default loss, negatives or sampler that changed since) made the trainer refuse the resume, or
worse, continue a run under different rules than its first epochs."""
from __future__ import annotations

# where and how fast a run computes, not what it computes: these may differ between attempts
DEVICE_LIKE = ("device", "num_threads", "amp", "feature_buffer", "eval_batch_size", "log_every")
# what a run stored before these settings existed trained with (full softmax, DFF logits from uniform at the
# shared learning rate, batches of random users); the trainer gets them too (``train(before_it_existed=...)``)
BEFORE_IT_EXISTED: dict = {"loss": "full", "negatives": 256, "negative_sampler": "uniform", "amp": "none",
                           "layer_init": "uniform", "layer_lr_mult": 1.0, "batching": "random",
                           "lr_decay": 1.0, "feature_lr_mult": 1.0}
# passed to TrainConfig separately by the caller, or describe the run rather than configure it
NOT_SETTINGS = ("strategy", "layers", "seed")


def resumed_settings(stored: dict, requested: dict | None, fields: set[str] | tuple[str, ...]) -> dict:
    """The settings to rebuild a resumed run with: ``stored`` (the run's config) for every ``TrainConfig``
    field (``fields``) that is not device-like, the values of ``BEFORE_IT_EXISTED`` for what it lacks, and the
    device-like settings of ``requested``."""
    names = set(fields) - set(NOT_SETTINGS)
    older = {k: v for k, v in BEFORE_IT_EXISTED.items() if k in names and k not in stored and k not in DEVICE_LIKE}
    kept = {k: v for k, v in stored.items() if k in names and k not in DEVICE_LIKE}
    device = {k: v for k, v in (requested or {}).items() if k in DEVICE_LIKE and v is not None}
    return {**older, **kept, **device}
