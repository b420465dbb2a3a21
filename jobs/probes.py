"""The layer usefulness score (``dff_core.probes``) of a stored feature set, cached on disk next to the
database (keyed by the feature set and the parameters), so the Train page shows it in a second."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from dff_core.probes import DEFAULTS, layer_scores
from jobs.reads import load_split
from storage.db import Database
from storage.features import FeatureSetRecord, read_features


def layer_usefulness(db: Database, fs: FeatureSetRecord, k: int = 10, max_items: int = 1000, window: int = 3,
                     seed: int = 0, max_batch_bytes: int = 256 * 2 ** 20) -> pd.DataFrame:
    """Columns ``layer, score, chance, lift`` (one row per stored layer); ``attrs["items"]`` = sample size."""
    split = load_split(db, fs.dataset_id)
    _, present = read_features(db, fs, layers=[0], dtype=np.float16)
    return layer_scores(split.train, split.num_items, present, fs.num_layers, fs.dim,
                        lambda ids: read_features(db, fs, layers=ids, dtype=np.float16)[0], name=fs.name, k=k,
                        max_items=max_items, window=window, seed=seed, max_batch_bytes=max_batch_bytes)


def _cache_path(db: Database, fs: FeatureSetRecord, params: dict) -> Path:
    key = json.dumps({"v": 2, "fs": fs.id,  # v2: no-variance layers and random tie-breaking (dff_core.probes) "name": fs.name, "created": str(fs.created_at), "status": fs.status,
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
