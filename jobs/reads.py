"""What the science reads from storage, in the science's types: the leave-one-out split as a
``SplitData`` and a feature set's chosen layers as one array. Used by training, sweeps, probes and
neighbours, so each reads the same way."""
from __future__ import annotations

import numpy as np

from dff_core.data.split import SplitData
from storage import Database
from storage.datasets import get_dataset, load_split_arrays
from storage.features import FeatureSetRecord, read_features


def load_split(db: Database, dataset_id: int) -> SplitData:
    """The stored leave-one-out split as in-memory sequences (dense 0-based item indices)."""
    return SplitData(**load_split_arrays(db, dataset_id))


def load_training_features(db: Database, dataset_id: int, fs: FeatureSetRecord,
                           layers: list[int] | None, dtype=np.float32) -> tuple[np.ndarray, list[int], int]:
    """The chosen layers of a feature set as ``[items, len(layers), dim]`` (float32 unless ``dtype`` says),
    checked against the dataset. Returns (features, layer ids, items without vectors)."""
    if fs.dataset_id != dataset_id:
        other = get_dataset(db, fs.dataset_id).name
        raise ValueError(f"feature set {fs.name!r} was extracted for dataset {other!r}, not this one; extract "
                         "features for this dataset or pick a matching feature set")
    if fs.status == "running":
        raise ValueError(f"feature set {fs.name!r} is still being extracted; wait for its job to finish")
    layer_ids = list(range(fs.num_layers)) if layers is None else layers
    feats, present = read_features(db, fs, layers=layer_ids, dtype=dtype)
    missing = int((~present).sum())
    if missing == len(present):
        raise ValueError(f"feature set {fs.name!r} has no vectors stored")
    return feats, layer_ids, missing
