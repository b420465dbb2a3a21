"""A finished run's model, rebuilt from its stored config and checkpoint (``dff_core.neighbours.runs.RunModel``).

The trainer's final checkpoint holds the best-epoch weights (it loads the best state before its last
save, and keeps that state under ``state["best_state"]`` too); frozen features are not in checkpoints,
so they are read again from the run's feature set with the run's layer choice, exactly as in
``jobs.workflows.run_training``.
"""
from __future__ import annotations

from pathlib import Path

from dff_core.neighbours.runs import RunModel
from jobs.reads import load_split, load_training_features
from storage import Database
from storage.features import get_feature_set
from storage.runs import checkpoint_dir, get_run


def checkpoint_path(db: Database, run_id: int) -> Path:
    """Where ``jobs.workflows.run_training`` keeps the run's checkpoint."""
    from dff_core.train.trainer import CHECKPOINT_NAME

    return checkpoint_dir(db, run_id) / CHECKPOINT_NAME


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
