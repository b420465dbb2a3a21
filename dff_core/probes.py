"""A cheap per-layer usefulness score, so layers can be picked before any training time is spent.

Neighbour agreement with co-watch: for a sample of items, take each item's ``k`` nearest neighbours by cosine
similarity of the (mean-centred) layer vectors and count how many of them the item was watched *near* —
within ``window`` positions of the same user's **training** history (validation and test targets are never
used). ``chance`` is that fraction for random neighbours, so ``lift = score / chance``: 1 means the layer
knows nothing about what people watch together, higher is better. It takes seconds on a few thousand items
and is cached on disk next to the database (keyed by the feature set and the parameters).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from storage.datasets import load_split
from storage.db import Database
from storage.features import FeatureSetRecord, read_features

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


def layer_usefulness(db: Database, fs: FeatureSetRecord, k: int = 10, max_items: int = 1000, window: int = 3,
                     seed: int = 0, max_batch_bytes: int = 256 * 2 ** 20) -> pd.DataFrame:
    """Columns ``layer, score, chance, lift`` (one row per stored layer); ``attrs["items"]`` = sample size."""
    split = load_split(db, fs.dataset_id)
    co = cowatch_matrix(split.train, split.num_items, window)
    has_pair = np.asarray(co.sum(axis=1)).ravel() > 0
    _, present = read_features(db, fs, layers=[0], dtype=np.float16)
    candidates = np.flatnonzero(has_pair[: len(present)] & present)
    if len(candidates) < k + 2:
        raise ValueError(f"feature set {fs.name!r}: only {len(candidates)} items have both vectors and training "
                         f"co-watches; the layer score needs at least {k + 2}")
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(candidates, size=min(max_items, len(candidates)), replace=False))
    m = len(sample)
    related = co[sample][:, sample].toarray() > 0
    chance = float(related.sum() / (m * (m - 1)))
    batch = max(1, int(max_batch_bytes // max(1, len(present) * fs.dim * 2)))
    scores: list[float] = []
    for start in range(0, fs.num_layers, batch):
        layer_ids = list(range(start, min(fs.num_layers, start + batch)))
        feats, _ = read_features(db, fs, layers=layer_ids, dtype=np.float16)
        sub = np.asarray(feats[sample], dtype=np.float32)
        del feats
        scores += [neighbour_agreement(sub[:, j, :], related, k) for j in range(len(layer_ids))]
    out = pd.DataFrame({"layer": np.arange(fs.num_layers), "score": scores})
    out["chance"] = chance
    out["lift"] = out["score"] / chance if chance > 0 else np.nan
    out.attrs["items"] = m
    return out


def _cache_path(db: Database, fs: FeatureSetRecord, params: dict) -> Path:
    key = json.dumps({"fs": fs.id, "name": fs.name, "created": str(fs.created_at), "status": fs.status,
                      "items": fs.stats.get("items"), "layers": fs.num_layers, **params}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return db.side_dir("cache") / "layer-scores" / f"fs{fs.id}-{digest}.json"


def cached_layer_usefulness(db: Database, fs: FeatureSetRecord, **params) -> pd.DataFrame:
    """``layer_usefulness`` computed once per feature set and parameters, then read from a small JSON file."""
    params = {**DEFAULTS, **params}
    path = _cache_path(db, fs, params)
    if path.exists():
        try:
            data = json.loads(path.read_text())
            out = pd.DataFrame(data["rows"])
            out.attrs["items"] = data["items"]
            return out
        except (ValueError, KeyError):
            pass  # a damaged cache file is recomputed
    out = layer_usefulness(db, fs, **params)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"items": out.attrs["items"], "rows": out.to_dict("records")}))
    tmp.replace(path)
    return out
