"""One training run as a Ray task: pure compute, no storage.

The sweep driver (``jobs.ray_sweep``) puts the split and each feature tensor into the object store once;
every task receives them as zero-copy, read-only arrays, slices out its own layers (float32, as the local
engine reads them) and returns ``TrainResult.to_dict()`` — the per-epoch history, final validation and test
metrics, layer weights — to the driver, which alone writes storage. With the same config and seed on CPU
(and the same thread count) a task gives the same numbers as ``jobs.workflows.run_training``.
"""
from __future__ import annotations

import socket
import time

import numpy as np


def train_task(split, cfg: dict, features: np.ndarray | None, positions: list[int] | None) -> dict:
    """Train one SASRec run. ``features`` is ``[items, layers, dim]`` (any float dtype) holding at least the
    layers at ``positions``; ``cfg`` is a ``TrainConfig`` dict (its ``device`` says where to train)."""
    from dff_core.train.trainer import TrainConfig, train

    start = time.perf_counter()
    feats = None
    if features is not None:
        feats = np.ascontiguousarray(features if positions is None else features[:, positions], dtype=np.float32)
    config = TrainConfig.from_dict(cfg)
    result = train(split, config, features=feats)
    out = result.to_dict()
    out.update(host=socket.gethostname(), device=config.device, wall_seconds=time.perf_counter() - start)
    return out
