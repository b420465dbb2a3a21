"""A cheap per-layer usefulness score, so layers can be picked before any training time is spent.

Neighbour agreement with co-watch: for a sample of items, take each item's ``k`` nearest neighbours by cosine
similarity of the (mean-centred) layer vectors and count how many of them the item was watched *near* —
within ``window`` positions of the same user's **training** history (validation and test targets are never
used). ``chance`` is that fraction for random neighbours, so ``lift = score / chance``: 1 means the layer
knows nothing about what people watch together, higher is better. A layer without variance (every item the same
vector: all zeros, a constant) has no neighbours to speak of: it scores as no signal (score = chance, lift 1) and
says why in ``note``, instead of whatever index order its ties would give. Ties between neighbours are broken at
random (seeded), and how many items had a tie at the k-th neighbour is reported (``ties``). It takes seconds on a few thousand items
and is cached on disk next to the database (keyed by the feature set and the parameters) by
``jobs.probes``, which reads the split and the vectors; this module only computes.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from scipy import sparse

DEFAULTS = {"k": 10, "max_items": 1000, "window": 3, "seed": 0}


def cowatch_matrix(train: list[np.ndarray], num_items: int, window: int = 3) -> sparse.csr_matrix:
    """Symmetric item × item 0/1 matrix: both items appear within ``window`` positions in some history."""
    rows, cols = [], []
    for seq in train:
        seq = np.asarray(seq, dtype=np.int64)
        for d in range(1, window + 1):
            if len(seq) > d:
                rows.append(seq[:-d])
                cols.append(seq[d:])
    if not rows:
        return sparse.csr_matrix((num_items, num_items), dtype=np.float32)
    r, c = np.concatenate(rows), np.concatenate(cols)
    m = sparse.coo_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(num_items, num_items)).tocsr()
    m = ((m + m.T) > 0).astype(np.float32)
    m.setdiag(0)
    m.eliminate_zeros()
    return m.tocsr()


NO_VARIANCE = "no variance: every sampled item has the same vector on this layer, so it cannot tell items apart"
# a layer whose centred vectors are this small against their raw size is constant up to float16 rounding
REL_VARIANCE_FLOOR = 1e-6


def neighbour_agreement(x: np.ndarray, related: np.ndarray, k: int, seed: int = 0) -> float:
    """Fraction of each row's ``k`` cosine nearest neighbours (self excluded) that ``related`` marks True."""
    return layer_agreement(x, related, k, seed)[0]


def layer_agreement(x: np.ndarray, related: np.ndarray, k: int, seed: int = 0) -> tuple[float | None, int]:
    """``(agreement, ties)``: :func:`neighbour_agreement`, or None when the layer has no variance; ``ties`` counts
    the rows whose k-th and (k+1)-th neighbours score alike. Ties are broken by a seeded random order of the
    columns (not by index order, which would favour whatever the sample's order happens to relate)."""
    x = x.astype(np.float32, copy=True)
    scale = float(np.linalg.norm(x, axis=1).max()) if len(x) else 0.0
    x -= x.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.isfinite(scale) or float(norms.max()) <= REL_VARIANCE_FLOOR * max(scale, 1e-30):
        return None, 0
    x /= np.maximum(norms, 1e-8)
    order = np.random.default_rng(seed).permutation(len(x))
    sim = (x @ x[order].T)                      # columns in a seeded random order: ties fall to it
    sim[order, np.arange(len(x))] = -np.inf    # self
    k = min(k, len(x) - 1)
    part = np.argpartition(-sim, k, axis=1) if k < len(x) - 1 else np.argsort(-sim, axis=1)
    kth = np.sort(np.take_along_axis(sim, part[:, :k + 1], axis=1), axis=1)[:, ::-1]
    ties = int((kth[:, k - 1] == kth[:, k]).sum()) if kth.shape[1] > k else 0
    nn = order[part[:, :k]]
    return float(related[np.arange(len(x))[:, None], nn].mean()), ties


def layer_scores(train: list[np.ndarray], num_items: int, present: np.ndarray, num_layers: int, dim: int,
                 read_layers: Callable[[list[int]], np.ndarray], *, name: str = "", k: int = 10,
                 max_items: int = 1000, window: int = 3, seed: int = 0,
                 max_batch_bytes: int = 256 * 2 ** 20) -> pd.DataFrame:
    """Columns ``layer, score, chance, lift, ties, note`` (one row per layer); ``attrs["items"]`` = sample size.
    A layer without variance gets ``score = chance`` (lift 1: no signal) and ``note`` saying so; ``ties`` is how
    many sampled items had a tie at their k-th neighbour (broken at random, seeded by ``seed``).

    ``present``: which items have vectors; ``read_layers(ids)`` returns ``[items, len(ids), dim]`` float16
    vectors for those layers (called in batches of at most ``max_batch_bytes``, so a large set never sits in
    memory whole)."""
    co = cowatch_matrix(train, num_items, window)
    has_pair = np.asarray(co.sum(axis=1)).ravel() > 0
    candidates = np.flatnonzero(has_pair[: len(present)] & present)
    if len(candidates) < k + 2:
        raise ValueError(f"feature set {name!r}: only {len(candidates)} items have both vectors and training "
                         f"co-watches; the layer score needs at least {k + 2}")
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(candidates, size=min(max_items, len(candidates)), replace=False))
    m = len(sample)
    related = co[sample][:, sample].toarray() > 0
    chance = float(related.sum() / (m * (m - 1)))
    batch = max(1, int(max_batch_bytes // max(1, len(present) * dim * np.dtype(np.float16).itemsize)))
    scores: list[float] = []
    ties: list[int] = []
    notes: list[str] = []
    for start in range(0, num_layers, batch):
        layer_ids = list(range(start, min(num_layers, start + batch)))
        feats = read_layers(layer_ids)
        sub = np.asarray(feats[sample], dtype=np.float32)
        del feats
        for j in range(len(layer_ids)):
            score, tied = layer_agreement(sub[:, j, :], related, k, seed)
            scores.append(chance if score is None else score)
            ties.append(tied)
            notes.append(NO_VARIANCE if score is None else
                         f"{tied} of {m} items had a tie at their {k}th neighbour, broken at random" if tied else "")
    out = pd.DataFrame({"layer": np.arange(num_layers), "score": scores})
    out["chance"] = chance
    out["lift"] = out["score"] / chance if chance > 0 else np.nan
    out["ties"] = ties
    out["note"] = notes
    out.attrs["items"] = m
    return out
