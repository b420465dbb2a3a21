"""A finished run's model, rebuilt from its stored config and checkpoint (``dff_core.neighbours.runs.RunModel``).

The trainer's final checkpoint holds the best-epoch weights (it loads the best state before its last
save, and keeps that state under ``state["best_state"]`` too); frozen features are not in checkpoints,
so they are read again from the run's feature set with the run's layer choice, exactly as in
``jobs.workflows.run_training``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dff_core.neighbours.runs import RunModel
from dff_core.train.defaults import CHECKPOINT_NAME
from jobs.reads import load_split, load_training_features
from storage import Database
from storage.features import get_feature_set
from storage.runs import checkpoint_dir, get_run


def checkpoint_path(db: Database, run_id: int) -> Path:
    """Where ``jobs.workflows.run_training`` keeps the run's checkpoint (without importing torch)."""
    return checkpoint_dir(db, run_id) / CHECKPOINT_NAME


VECTORS_NAME = "item_vectors.npz"


def checkpoint_stamp(db: Database, run_id: int) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of the run's checkpoint, None without one: what changes when the run is retrained
    (the run's neighbour fingerprint and its kept vectors both go by it)."""
    path = checkpoint_path(db, run_id)
    if not path.exists():
        return None
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _vectors_path(db: Database, run_id: int) -> Path:
    return checkpoint_path(db, run_id).with_name(VECTORS_NAME)


def save_run_vectors(db: Database, run_id: int, vectors: np.ndarray) -> Path:
    """Keep a finished run's item vectors beside its checkpoint, stamped with the checkpoint's mtime and size.

    Why: Explore's neighbour lists of a run need only these vectors; reading them back costs no torch import
    (seconds on a first visit) and no model rebuild. Written atomically; a retrained run changes the stamp."""
    stamp = checkpoint_stamp(db, run_id)
    if stamp is None:
        raise ValueError(f"run {run_id} has no checkpoint to stamp its vectors with")
    path = _vectors_path(db, run_id)
    tmp = path.with_name(f".{VECTORS_NAME}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, vectors=np.asarray(vectors, dtype=np.float32), checkpoint=np.array(stamp, dtype=np.int64))
    tmp.replace(path)
    return path


def stored_run_vectors(db: Database, run_id: int) -> np.ndarray | None:
    """The vectors ``save_run_vectors`` kept, or None when missing, unreadable or older than the checkpoint."""
    path = _vectors_path(db, run_id)
    stamp = checkpoint_stamp(db, run_id)
    if stamp is None or not path.exists():
        return None
    try:
        with np.load(path) as saved:
            if tuple(int(v) for v in saved["checkpoint"]) != stamp:
                return None
            return saved["vectors"]
    except (OSError, ValueError, KeyError):
        return None


def load_run_model(db: Database, run_id: int) -> RunModel:
    """Rebuild the run's SASRec with its best weights, on CPU, in eval mode."""
    from dff_core.models.item_encoders import FEATURE_STRATEGIES
    import torch

    from dff_core.train.trainer import TrainConfig, build_model

    run = get_run(db, run_id)
    path = checkpoint_path(db, run.id)
    if not path.exists():
        raise ValueError(f"run {run.id} has no checkpoint at {path}; train it again to explore it")
    cfg = TrainConfig.from_dict({**run.config, "layers": None, "device": "cpu"})
    feats = None
    if run.strategy in FEATURE_STRATEGIES:
        if run.feature_set_id is None:
            raise ValueError(f"run {run.id} ({run.strategy}) has no feature set recorded")
        try:
            fs = get_feature_set(db, run.feature_set_id)
        except LookupError:
            raise ValueError(f"run {run.id} was trained on feature set {run.config.get('feature_set')!r}, which "
                             "has been deleted; its item vectors cannot be rebuilt") from None
        feats, _, _ = load_training_features(db, run.dataset_id, fs, run.config.get("layers"))
    split = load_split(db, run.dataset_id)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("num_items") != split.num_items:
        raise ValueError(f"run {run.id}'s checkpoint has {saved.get('num_items')} items, the dataset now "
                         f"{split.num_items}; it was trained on an earlier import")
    state = (saved.get("state") or {}).get("best_state") or saved["model"]
    torch.manual_seed(cfg.seed)
    model = build_model(split.num_items, cfg, feats)
    model.load_state_dict(state)
    model.eval()
    return RunModel(run_id=run.id, strategy=run.strategy, model=model, split=split)
