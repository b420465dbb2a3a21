"""Full-ranking metrics for next-item prediction with one relevant item per user.

Protocol (used everywhere in DFF Studio, the popularity baseline included):

* The target is ranked against ALL items of the dataset (no sampled negatives).
* Items the user has already seen in the input sequence of the split are EXCLUDED from the ranking
  (their score is set to ``-inf``) -- except the target itself, which is never excluded even if it
  appears in the history (in MicroLens no item repeats within a user, so this does not arise there).
* Ranks are 0-based and pessimistic: ``rank = #(score > s_t) + #(score == s_t) - 1``, so ties count
  AGAINST the target and a constant scorer gets no credit.
* Scores must be finite; a NaN/inf score raises instead of silently ranking the target anywhere.
* ``HR@k = [rank < k]``, ``NDCG@k = [rank < k] / log2(rank + 2)``, ``MRR = 1 / (rank + 1)``, averaged
  over users.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _exclusion_mask(exclude, batch: int, num_items: int, device) -> torch.Tensor | None:
    """bool ``[B, N]`` from a mask (array/tensor) or from per-row collections of item indices."""
    if exclude is None:
        return None
    if isinstance(exclude, (torch.Tensor, np.ndarray)) and exclude.dtype in (torch.bool, np.bool_):
        mask = torch.as_tensor(exclude, device=device).clone()
        if mask.shape != (batch, num_items):
            raise ValueError(f"exclude mask shape {tuple(mask.shape)} != scores shape {(batch, num_items)}")
        return mask
    rows = list(exclude)
    if len(rows) != batch:
        raise ValueError(f"exclude has {len(rows)} rows, scores have {batch}")
    items = [np.asarray(r, dtype=np.int64).reshape(-1) for r in rows]
    lens = np.array([len(r) for r in items], dtype=np.int64)
    mask = torch.zeros(batch, num_items, dtype=torch.bool, device=device)
    if lens.sum():
        cols = np.concatenate(items)
        if cols.min() < 0 or cols.max() >= num_items:
            raise ValueError("excluded item index out of range")
        r = torch.as_tensor(np.repeat(np.arange(batch), lens), device=device)
        mask[r, torch.as_tensor(cols, device=device)] = True
    return mask


def rank_of_targets(scores, targets, exclude=None) -> np.ndarray:
    """0-based pessimistic rank of each target among all items.

    ``scores``: ``[B, N]`` (torch or numpy); ``targets``: ``[B]`` item indices; ``exclude``: ``None``,
    a bool mask ``[B, N]`` or a length-``B`` sequence of item-index collections (seen items). The
    target is never excluded. Raises ``ValueError`` if any score is NaN or infinite.
    """
    scores = torch.as_tensor(scores)
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, N], got {tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        bad = int((~torch.isfinite(scores)).any(dim=1).sum())
        raise ValueError(f"non-finite scores (NaN or inf) in {bad} of {scores.shape[0]} rows; "
                         "the model is broken (e.g. a fully masked attention row)")
    B, N = scores.shape
    targets = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets,
                              device=scores.device).long().reshape(-1)
    if targets.shape[0] != B:
        raise ValueError(f"{targets.shape[0]} targets for {B} score rows")
    if B and (targets.min() < 0 or targets.max() >= N):
        raise ValueError("target index out of range")
    rows = torch.arange(B, device=scores.device)
    target_scores = scores[rows, targets].unsqueeze(1)
    mask = _exclusion_mask(exclude, B, N, scores.device)
    if mask is not None:
        mask[rows, targets] = False
        scores = scores.masked_fill(mask, float("-inf"))
    higher = (scores > target_scores).sum(dim=1)
    ties = (scores == target_scores).sum(dim=1) - 1  # the target itself is not a tie
    return (higher + ties).cpu().numpy().astype(np.int64)


def metrics_from_ranks(ranks, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """``{"HR@k", "NDCG@k" for k in ks, "MRR"}`` averaged over users (all 0.0 if there are none)."""
    ranks = np.asarray(ranks, dtype=np.float64).reshape(-1)
    out: dict[str, float] = {}
    n = len(ranks)
    for k in ks:
        hit = ranks < k
        out[f"HR@{k}"] = float(hit.mean()) if n else 0.0
    for k in ks:
        hit = ranks < k
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean()) if n else 0.0
    out["MRR"] = float((1.0 / (ranks + 1.0)).mean()) if n else 0.0
    return out
