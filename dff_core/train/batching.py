"""Which training rows go into which batch, epoch by epoch.

Contract: :func:`epoch_plan` returns ``(order, ends)``: ``order`` is a permutation of the ``n`` training rows,
batch ``i`` is ``order[ends[i-1]:ends[i]]`` (``ends[-1] == n``), so every row (every user's training prefix,
hence every training target) is in exactly one batch per epoch. The plan is drawn from ``generator`` only, so a
seed gives the same epochs, and a checkpoint that keeps ``(order, ends)`` resumes mid-epoch exactly.

* ``random``: a shuffle cut into ``batch_size`` slices (SASRec's usual batches).
* ``length``: rows of similar length batched together, batch order shuffled. Why: a batch is padded to its
  longest row. Micro-video histories are short and skewed (MicroLens-50k: median 6, max 218), so a random batch
  of 1,024 users runs the transformer and its loss over ~11x more positions than hold a target; sorted batches
  need ~1.1x. Each batch holds about as many **targets** as a random batch does (``batch_size`` x the mean row
  length), not as many rows: the loss is a mean over a batch's targets, so batches of equal row count would give
  a short user's target many times the weight of a long user's in the epoch's updates (measured on MicroLens-50k:
  that objective converged ~15 % lower). Rows of equal length are shuffled among themselves every epoch (a random
  tie key), so no batch's content is fixed.
"""
from __future__ import annotations

import torch

from .defaults import BATCHINGS  # the choices live with the defaults (torch-free)


def equal_slices(n: int, batch_size: int) -> torch.Tensor:
    """``ends`` of ``n`` rows cut into slices of ``batch_size`` (the last one shorter): random batching's cut, and
    that of checkpoints written before batch plans were kept."""
    return torch.arange(batch_size, n + batch_size, batch_size)[: -(-n // batch_size)].clamp_(max=n)


def epoch_plan(lengths: torch.Tensor, batch_size: int, batching: str,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order [n] int64, ends [batches] int64)`` for one epoch (see the module docstring)."""
    if batching not in BATCHINGS:
        raise ValueError(f"unknown batching {batching!r}; choose from {', '.join(BATCHINGS)}")
    lengths = torch.as_tensor(lengths).cpu()
    n = len(lengths)
    if batching == "random":
        order = torch.randperm(n, generator=generator)
        return order, equal_slices(n, batch_size)
    tie = torch.rand(n, generator=generator, dtype=torch.float64)          # in [0, 1): shuffles equal lengths
    order = torch.argsort(lengths.to(torch.float64) + tie, stable=True)
    if n == 0:
        return order, torch.zeros(0, dtype=torch.int64)
    targets = torch.cumsum(lengths[order].to(torch.float64), 0)           # targets up to and including each row
    batches = max(1, -(-n // batch_size))                                  # as many batches as random batching
    cuts = torch.searchsorted(targets, torch.arange(1, batches, dtype=torch.float64) * targets[-1] / batches) + 1
    bounds = torch.unique(torch.cat([cuts.clamp_(max=n), torch.tensor([n])]))  # equal shares of the targets
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), bounds[:-1]])
    shuffled = torch.randperm(len(bounds), generator=generator)
    order = torch.cat([order[starts[i]:bounds[i]] for i in shuffled.tolist()])
    return order, torch.cumsum((bounds - starts)[shuffled], 0)
