"""The popularity baseline's test metrics, computed once per stored split and reused by every run of it.

Every run stores the baseline beside its own metrics (Compare's bars, the study report). It depends only on the
split, yet each run is its own process; so it is cached on disk next to the database, keyed by the dataset and a
fingerprint of its split (the targets and the training counts), like the layer scores (``jobs.probes``)."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from dff_core.data.split import SplitData
from dff_core.eval.evaluate import popularity_baseline
from storage.db import Database


def split_fingerprint(split: SplitData) -> str:
    """A short hash of what the baseline depends on: targets, training item counts and history lengths."""
    h = hashlib.sha256()
    for arr in (split.val_target, split.test_target, split.train_item_counts(),
                np.array([len(s) for s in split.train])):
        h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def cached_popularity(db: Database, dataset_id: int, split: SplitData) -> dict[str, float]:
    """Test metrics of :func:`dff_core.eval.evaluate.popularity_baseline` on ``split``, from the cache when there."""
    path = db.side_dir("cache") / "popularity" / f"ds{dataset_id}-{split_fingerprint(split)}.json"
    if path.exists():
        try:
            return {k: float(v) for k, v in json.loads(path.read_text()).items()}
        except (ValueError, AttributeError):
            pass  # a damaged cache file is recomputed
    metrics = popularity_baseline(split, "test").metrics
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{id(metrics)}")
    tmp.write_text(json.dumps(metrics))
    tmp.replace(path)
    return metrics
