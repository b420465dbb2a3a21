"""A finished run's model, rebuilt from its stored config and checkpoint: item vectors for neighbour
search and per-user top-k recommendations under the evaluation protocol.

The trainer's final checkpoint holds the best-epoch weights (it loads the best state before its last
save, and keeps that state under ``state["best_state"]`` too); frozen features are not in checkpoints,
so they are read again from the run's feature set with the run's layer choice, exactly as in
``workflows.run_training``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from storage import Database
from storage.runs import checkpoint_dir, get_run

from ..data.split import SplitData


def checkpoint_path(db: Database, run_id: int) -> Path:
    """Where ``workflows.run_training`` keeps the run's checkpoint."""
    from dff_core.train.trainer import CHECKPOINT_NAME

    return checkpoint_dir(db, run_id) / CHECKPOINT_NAME


@dataclass
class Recommendation:
    user: str
    history: list[int]            # the test input (training items + validation item), oldest first
    test_item: int
    items: list[int]              # top-k, best first, seen items excluded (the test item never)
    scores: list[float]
    test_rank: int                # 0-based pessimistic rank of the test item (as in evaluation)

    @property
    def hit(self) -> bool:
        return self.test_rank < len(self.items)


@dataclass
class RunModel:
    run_id: int
    strategy: str
    model: "torch.nn.Module" = field(repr=False)  # torch is imported when a run is loaded, not with the page
    split: SplitData = field(repr=False)
    _vectors: np.ndarray | None = field(default=None, repr=False)
    _users: dict | None = field(default=None, repr=False)

    def item_vectors(self) -> np.ndarray:
        """``[num_items, hidden]``: the item encoder's output (what SASRec embeds and scores against)."""
        import torch

        if self._vectors is None:
            with torch.no_grad():
                self._vectors = self.model.item_encoder().detach().float().cpu().numpy()
        return self._vectors

    def user_index(self, user: str | int) -> int:
        if self._users is None:
            self._users = {str(u): i for i, u in enumerate(self.split.user_ids)}
        try:
            return self._users[str(user)]
        except KeyError:
            raise ValueError(f"no user {user!r} in this dataset's split (e.g. "
                             f"{', '.join(map(str, self.split.user_ids[:3]))})") from None

    def recommend(self, user: str | int, k: int = 10) -> Recommendation:
        """Top-``k`` next items for the user's test input; items of that input are excluded except the
        test item itself, ties counted against it -- the protocol of ``dff_core.eval``."""
        import torch

        from dff_core.eval.evaluate import pad_left
        from dff_core.eval.metrics import rank_of_targets

        with torch.no_grad():
            return self._recommend(torch, pad_left, rank_of_targets, user, k)

    def _recommend(self, torch, pad_left, rank_of_targets, user: str | int, k: int) -> Recommendation:
        u = self.user_index(user)
        seq = self.split.test_input(u).astype(np.int64)
        target = int(self.split.test_target[u])
        width = self.model.cfg.max_len
        inp = torch.from_numpy(pad_left(seq, np.array([len(seq)]), width))
        scores = self.model.predict(inp)[0].float()
        rank = int(rank_of_targets(scores[None], np.array([target]), [seq])[0])
        seen = torch.as_tensor(np.setdiff1d(seq, [target]))
        scores[seen] = float("-inf")
        k = min(k, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, k)
        return Recommendation(user=str(self.split.user_ids[u]), history=seq.tolist(), test_item=target,
                              items=top.indices.tolist(), scores=top.values.tolist(), test_rank=rank)


def load_run_model(db: Database, run_id: int) -> RunModel:
    """Rebuild the run's SASRec with its best weights, on CPU, in eval mode."""
    from dff_core.models.item_encoders import FEATURE_STRATEGIES
    import torch

    from dff_core.train.trainer import TrainConfig, build_model
    from dff_core.workflows import load_training_features
    from storage.datasets import load_split
    from storage.features import get_feature_set

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
