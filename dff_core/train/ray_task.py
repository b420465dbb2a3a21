"""One training run as a Ray task: pure compute, no storage.

The sweep driver (``jobs.ray_sweep``) puts the split and each feature tensor into the object store once;
every task receives them as zero-copy, read-only arrays, slices out its own layers (float32, as the local
engine reads them) and returns ``TrainResult.to_dict()`` — the per-epoch history, final validation and test
metrics, layer weights — to the driver, which alone writes storage. With the same config and seed on CPU
(and the same thread count) a task gives the same numbers as ``jobs.workflows.run_training``.

Like a local run, it keeps what Explore opens: the task trains with a checkpoint in a temporary folder on its
worker and returns the final checkpoint's bytes (``checkpoint``) and the item vectors (``vectors``,
``dff_core.neighbours.runs.item_vectors``); the driver stores both beside the run.
"""
from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path

import numpy as np


def train_task(split, cfg: dict, features: np.ndarray | None, positions: list[int] | None) -> dict:
    """Train one SASRec run. ``features`` is ``[items, layers, dim]`` (any float dtype) holding at least the
    layers at ``positions``; ``cfg`` is a ``TrainConfig`` dict (its ``device`` says where to train)."""
    from dff_core.neighbours.runs import item_vectors
    from dff_core.train.defaults import CHECKPOINT_NAME
    from dff_core.train.trainer import TrainConfig, train

    start = time.perf_counter()
    feats = None
    if features is not None:
        feats = np.ascontiguousarray(features if positions is None else features[:, positions], dtype=np.float32)
    config = TrainConfig.from_dict(cfg)
    with tempfile.TemporaryDirectory(prefix="dff-ray-run-") as folder:
        result = train(split, config, features=feats, checkpoint_dir=folder)
        checkpoint = (Path(folder) / CHECKPOINT_NAME).read_bytes()
    out = result.to_dict()
    out.update(checkpoint=checkpoint, vectors=item_vectors(result.model))
    out.update(host=socket.gethostname(), device=config.device, wall_seconds=time.perf_counter() - start)
    return out
