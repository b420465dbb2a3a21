"""Negative sampling for the sampled-softmax objective.

Contract: ``NegativeSampler.sample(rows, batch_targets)`` returns ``[len(rows), n]`` model indices (``1..num_items``,
``0`` = "no negative", masked out of the loss) such that **no sampled item is in that user's training
sequence** (all of ``data.train[u]``, not just the window the model sees; this also excludes every positive
target of the row). Two proposal distributions:

* ``uniform``: every catalogue item equally likely;
* ``in-batch``: items drawn from the positive targets of the current batch (so in proportion to how often
  they occur there: roughly popularity-weighted), the classic "in-batch negatives" with replacement.

Items are drawn independently per row (with replacement); draws that hit the user's history are redrawn, up to
``MAX_ROUNDS`` times; what still collides after that (a user who has watched nearly every candidate) becomes
``0``. No logQ correction is applied: the sampled logits are used as they are, so ``in-batch`` pushes popular
items down harder than full softmax would (measured in ``bench/bench_time_to_quality.py``).

Everything runs on the CPU with a dedicated ``torch.Generator`` (its state goes into the training checkpoint),
so the negatives, and hence a resumed run, are the same on every device.
"""
from __future__ import annotations

import numpy as np
import torch

from .defaults import SAMPLERS  # noqa: E402 - the choices live with the defaults (torch-free)
MAX_ROUNDS = 50


class NegativeSampler:
    def __init__(self, histories: list[np.ndarray], num_items: int, n: int, kind: str, generator: torch.Generator):
        """``histories[r]``: dataset item indices (0-based) of training row ``r``'s whole training sequence."""
        if kind not in SAMPLERS:
            raise ValueError(f"unknown negative sampler {kind!r}; choose from {', '.join(SAMPLERS)}")
        if n < 1:
            raise ValueError("negatives must be >= 1")
        self.num_items, self.n, self.kind, self.gen = int(num_items), int(n), kind, generator
        self.stride = self.num_items + 1
        lens = np.array([len(h) for h in histories], dtype=np.int64)
        rows = np.repeat(np.arange(len(histories), dtype=np.int64), lens)
        items = (np.concatenate(histories).astype(np.int64) + 1) if len(histories) else np.zeros(0, np.int64)
        # one sorted key per (row, model item) the row has seen: membership is a binary search
        self.keys = torch.from_numpy(np.unique(rows * self.stride + items))

    def seen(self, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """bool, same shape as ``items``: True where ``items[i, j]`` is in row ``rows[i]``'s history."""
        keys = rows.view(-1, 1) * self.stride + items
        pos = torch.searchsorted(self.keys, keys.reshape(-1)).clamp_(max=max(len(self.keys) - 1, 0))
        hit = self.keys[pos] == keys.reshape(-1) if len(self.keys) else torch.zeros_like(keys.reshape(-1), dtype=torch.bool)
        return hit.view_as(items)

    def _draw(self, shape: tuple[int, ...], pool: torch.Tensor | None) -> torch.Tensor:
        if pool is None:
            return torch.randint(1, self.num_items + 1, shape, generator=self.gen)
        return pool[torch.randint(0, len(pool), shape, generator=self.gen)]

    def sample(self, rows: torch.Tensor, batch_targets: torch.Tensor | None = None) -> torch.Tensor:
        """``[len(rows), n]`` negatives (model indices, 0 = none) for training rows ``rows`` (CPU int64).
        ``batch_targets``: the batch's positive targets (model indices; zeros ignored), needed for ``in-batch``."""
        rows = rows.to("cpu", torch.int64)
        pool = None
        if self.kind == "in-batch":
            if batch_targets is None:
                raise ValueError("the in-batch sampler needs the batch's targets")
            pool = batch_targets.reshape(-1).to("cpu", torch.int64)
            pool = pool[pool > 0]
            if len(pool) == 0:
                return torch.zeros(len(rows), self.n, dtype=torch.int64)
        neg = self._draw((len(rows), self.n), pool)
        bad = self.seen(rows, neg)
        for _ in range(MAX_ROUNDS):
            if not bad.any():
                break
            where = bad.nonzero(as_tuple=True)
            neg[where] = self._draw((len(where[0]),), pool)
            bad[where] = self.seen(rows[where[0]], neg[where].view(-1, 1)).view(-1)
        neg[bad] = 0
        return neg


def shared_negatives(num_items: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``[min(k, num_items)]`` distinct model indices (``1..num_items``) drawn uniformly without replacement, shared
    by every position of a batch (``loss="logq"``): one product ``[positions, d] x [d, K]`` per step instead of
    one per user. Nothing is excluded but, in the loss, each position's own target (the logQ-corrected softmax
    estimates the full softmax, which does not exclude the user's history either)."""
    return torch.randperm(num_items, generator=generator)[:max(1, min(k, num_items))] + 1
