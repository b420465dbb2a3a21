"""Evaluate a model (or the popularity baseline) on the validation or test split of a ``SplitData``.

Same protocol as :mod:`dff_core.eval.metrics`: full ranking over all items, items of the split's input
sequence excluded (the target never), pessimistic ties. The validation input is ``train[u]``, the test
input ``train[u] + [val_target[u]]``; the model sees the last ``max_len`` items of it, while the
exclusion uses the whole input sequence.

Results are also broken down by the popularity of the *target* item: its number of interactions in
the training part (``SplitData.train_item_counts()``); ``cold`` = at most ``cold_threshold``
interactions, ``warm`` = more.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..data.split import SplitData
from .metrics import metrics_from_ranks, rank_excluding, rank_shared_scores

SPLITS = ("val", "test")


def pad_left(flat: np.ndarray, lens: np.ndarray, width: int, offset: int = 1) -> np.ndarray:
    """Left-padded ``[U, width]`` int64 array of the last ``width`` items of each sequence.

    Sequences are given concatenated (``flat``) with their lengths; values are ``item + offset``
    (model indices), padding is 0. Vectorised: loops over the ``width`` columns, not the users.
    """
    lens = np.asarray(lens, dtype=np.int64)
    out = np.zeros((len(lens), width), dtype=np.int64)
    ends = np.cumsum(lens)
    for j in range(width):  # j = distance from the end of the sequence
        rows = np.nonzero(lens > j)[0]
        out[rows, width - 1 - j] = flat[ends[rows] - 1 - j] + offset
    return out


def split_inputs(data: SplitData, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(flat input items, input lengths, targets)`` for ``split`` ("val" or "test")."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    lens = np.array([len(s) for s in data.train], dtype=np.int64)
    flat = np.concatenate(data.train).astype(np.int64) if data.train else np.zeros(0, dtype=np.int64)
    if split == "val":
        return flat, lens, np.asarray(data.val_target, dtype=np.int64)
    # test input = train + [val target]: insert each val target at the end of its user's segment
    flat = np.insert(flat, np.cumsum(lens), np.asarray(data.val_target, dtype=np.int64))
    return flat, lens + 1, np.asarray(data.test_target, dtype=np.int64)


@dataclass
class EvalInputs:
    """Everything ``evaluate`` needs for one split, built once (users sorted by input length so that
    batches can be trimmed to their longest sequence); ``order[i]`` = original user of sorted row i."""

    split: str
    order: np.ndarray
    seqs: torch.Tensor          # [U, max_len] left-padded model indices (sorted order)
    lengths: np.ndarray         # window lengths min(len, max_len) (sorted order)
    targets: np.ndarray         # (sorted order)
    seen_items: np.ndarray      # CSR of the whole input sequence (sorted order)
    seen_indptr: np.ndarray
    target_counts: np.ndarray   # training interactions of each target (ORIGINAL user order)
    excl_items: torch.Tensor    # CSR of the items each row excludes: seen, unique, never its target (sorted order)
    excl_indptr: np.ndarray

    @classmethod
    def build(cls, data: SplitData, split: str, max_len: int) -> "EvalInputs":
        flat, lens, targets = split_inputs(data, split)
        padded = pad_left(flat, lens, max_len)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        order = np.argsort(lens, kind="stable")
        s_lens = lens[order]
        s_indptr = np.concatenate([[0], np.cumsum(s_lens)]).astype(np.int64)
        # gather each sorted user's segment without a Python loop over users
        pos = np.arange(s_indptr[-1]) - np.repeat(s_indptr[:-1], s_lens) + np.repeat(starts[order], s_lens)
        counts = data.train_item_counts()
        seen, s_targets = flat[pos], targets[order]
        excl_items, excl_indptr = _exclusions(seen, s_indptr, s_targets, data.num_items)
        return cls(split=split, order=order, seqs=torch.from_numpy(padded[order]),
                   lengths=np.minimum(s_lens, max_len), targets=s_targets,
                   seen_items=seen, seen_indptr=s_indptr, target_counts=counts[targets],
                   excl_items=torch.from_numpy(excl_items), excl_indptr=excl_indptr)

    def ranks(self, start: int, stop: int, scores: torch.Tensor) -> np.ndarray:
        """Ranks of rows ``start:stop`` (sorted order) from their ``scores [stop - start, num_items]``."""
        lo, hi = self.excl_indptr[start], self.excl_indptr[stop]
        return rank_excluding(scores, torch.as_tensor(self.targets[start:stop], device=scores.device),
                              self.excl_items[lo:hi], torch.from_numpy(self.excl_indptr[start:stop + 1] - lo))


def _exclusions(seen: np.ndarray, indptr: np.ndarray, targets: np.ndarray,
                num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(items, indptr)`` of each row's seen items, de-duplicated and without the row's target (which the
    protocol never excludes), from the CSR ``(seen, indptr)``: one sort of (row, item) keys."""
    lens = np.diff(indptr)
    rows = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    keys = np.unique(rows * (num_items + 1) + seen)
    rows, items = keys // (num_items + 1), keys % (num_items + 1)
    keep = items != targets[rows]
    rows, items = rows[keep], items[keep]
    return items.astype(np.int64), np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(lens)))]).astype(np.int64)


@dataclass
class EvalResult:
    split: str
    metrics: dict[str, float]
    ranks: np.ndarray                      # 0-based rank per user, in data.user_ids order
    buckets: dict[str, dict] = field(default_factory=dict)  # {"cold"|"warm": {"users", "metrics"}}
    cold_threshold: int = 5

    @property
    def num_users(self) -> int:
        return len(self.ranks)

    def to_dict(self, include_ranks: bool = False) -> dict:
        out = {"split": self.split, "metrics": dict(self.metrics), "users": self.num_users,
               "cold_threshold": self.cold_threshold,
               "buckets": {k: {"users": v["users"], "metrics": dict(v["metrics"])} for k, v in self.buckets.items()}}
        if include_ranks:
            out["ranks"] = self.ranks.tolist()
        return out


def popularity_buckets(ranks: np.ndarray, target_counts: np.ndarray, cold_threshold: int = 5,
                       ks: Sequence[int] = (10, 20)) -> dict[str, dict]:
    """Metrics for users whose target has ``<= cold_threshold`` ("cold") / more ("warm") training
    interactions."""
    cold = np.asarray(target_counts) <= cold_threshold
    return {name: {"users": int(sel.sum()), "metrics": metrics_from_ranks(ranks[sel], ks)}
            for name, sel in (("cold", cold), ("warm", ~cold))}


def _result(split, ranks, target_counts, cold_threshold, ks) -> EvalResult:
    return EvalResult(split=split, metrics=metrics_from_ranks(ranks, ks), ranks=ranks,
                      buckets=popularity_buckets(ranks, target_counts, cold_threshold, ks),
                      cold_threshold=cold_threshold)


@torch.no_grad()
def evaluate(model, data: SplitData, split: str = "test", batch_size: int = 256, cold_threshold: int = 5,
             ks: Sequence[int] = (10, 20), inputs: EvalInputs | None = None) -> EvalResult:
    """Rank each user's ``split`` target with ``model`` (a ``SASRec``), in eval mode, item table
    computed once. ``inputs`` (from ``EvalInputs.build``) may be passed to skip re-building them."""
    if inputs is None:
        inputs = EvalInputs.build(data, split, model.cfg.max_len)
    elif inputs.split != split:
        raise ValueError(f"inputs were built for {inputs.split!r}, not {split!r}")
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        table = model.item_table()
        items_t = table[1:].T.contiguous() if device.type == "cpu" else None   # SASRec.scores: faster products
        n = len(inputs.targets)
        sorted_ranks = np.empty(n, dtype=np.int64)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            width = max(int(inputs.lengths[start:stop].max()), 1)
            seqs = inputs.seqs[start:stop, -width:].to(device, non_blocking=True)
            sorted_ranks[start:stop] = inputs.ranks(start, stop, model.predict(seqs, table, items_t))
    finally:
        model.train(was_training)
    ranks = np.empty(n, dtype=np.int64)
    ranks[inputs.order] = sorted_ranks
    return _result(split, ranks, inputs.target_counts, cold_threshold, ks)


def popularity_baseline(data: SplitData, split: str = "test", cold_threshold: int = 5,
                        ks: Sequence[int] = (10, 20)) -> EvalResult:
    """Score every item by its training interaction count; same protocol (sanity floor).

    Computed once per split object and arguments, then the same result is returned (a ``SplitData`` is not
    changed after it is built): every run of a study in one process reports it, and it does not depend on the run."""
    cache = data.__dict__.setdefault("_popularity_cache", {})
    key = (split, int(cold_threshold), tuple(ks))
    if key not in cache:
        cache[key] = _popularity_baseline(data, split, cold_threshold, ks)
    return cache[key]


def _popularity_baseline(data: SplitData, split: str, cold_threshold: int, ks: Sequence[int]) -> EvalResult:
    inputs = EvalInputs.build(data, split, max_len=1)
    counts = torch.as_tensor(data.train_item_counts(), dtype=torch.float32)
    n = len(inputs.targets)
    sorted_ranks = rank_shared_scores(counts, torch.as_tensor(inputs.targets), inputs.excl_items,
                                      torch.from_numpy(inputs.excl_indptr))
    ranks = np.empty(n, dtype=np.int64)
    ranks[inputs.order] = sorted_ranks
    return _result(split, ranks, inputs.target_counts, cold_threshold, ks)
