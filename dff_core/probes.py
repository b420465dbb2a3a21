"""A cheap per-layer usefulness score, so layers can be picked before any training time is spent.

Neighbour agreement with co-watch: for a sample of items, take each item's ``k`` nearest neighbours by cosine
similarity of the (mean-centred) layer vectors and count how many of them the item was watched *near* —
within ``window`` positions of the same user's **training** history (validation and test targets are never
used). ``chance`` is that fraction for random neighbours, so ``lift = score / chance``: 1 means the layer
knows nothing about what people watch together, higher is better. It takes seconds on a few thousand items
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


def neighbour_agreement(x: np.ndarray, related: np.ndarray, k: int) -> float:
    """Fraction of each row's ``k`` cosine nearest neighbours (self excluded) that ``related`` marks True."""
    x = x.astype(np.float32, copy=True)
    x -= x.mean(axis=0, keepdims=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    k = min(k, len(x) - 1)
    nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    return float(related[np.arange(len(x))[:, None], nn].mean())


def layer_scores(train: list[np.ndarray], num_items: int, present: np.ndarray, num_layers: int, dim: int,
                 read_layers: Callable[[list[int]], np.ndarray], *, name: str = "", k: int = 10,
                 max_items: int = 1000, window: int = 3, seed: int = 0,
                 max_batch_bytes: int = 256 * 2 ** 20) -> pd.DataFrame:
    """Columns ``layer, score, chance, lift`` (one row per layer); ``attrs["items"]`` = sample size.

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
    for start in range(0, num_layers, batch):
        layer_ids = list(range(start, min(num_layers, start + batch)))
        feats = read_layers(layer_ids)
        sub = np.asarray(feats[sample], dtype=np.float32)
        del feats
        scores += [neighbour_agreement(sub[:, j, :], related, k) for j in range(len(layer_ids))]
    out = pd.DataFrame({"layer": np.arange(num_layers), "score": scores})
    out["chance"] = chance
    out["lift"] = out["score"] / chance if chance > 0 else np.nan
    out.attrs["items"] = m
    return out
