"""The feature-set row type, in a module of its own so that ``storage.parquet_features`` can name it without
importing ``storage.features`` (which imports the Parquet module: that was an import circle)."""
from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class FeatureSetRecord:
    id: int
    dataset_id: int
    name: str
    backbone: str
    kind: str
    inputs: list
    pooling: str
    params: dict
    num_layers: int
    dim: int
    dtype: str
    layer_names: list | None
    status: str
    storage: str
    location: str
    stats: dict
    created_at: object = None


def feature_set_from_row(row) -> FeatureSetRecord:
    return FeatureSetRecord(
        id=row.id, dataset_id=row.dataset_id, name=row.name, backbone=row.backbone, kind=row.kind,
        inputs=json.loads(row.inputs), pooling=row.pooling, params=json.loads(row.params),
        num_layers=row.num_layers, dim=row.dim, dtype=row.dtype,
        layer_names=json.loads(row.layer_names) if row.layer_names else None, status=row.status,
        storage=row.storage, location=row.location, stats=json.loads(row.stats), created_at=row.created_at)
