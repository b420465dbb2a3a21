"""Representations to search in: a feature set at a layer or the mean of a layer range (caption sets
are one-layer feature sets), or a trained run's item vectors.

A ``Source`` is a small value (hashable, printable) so that caches can key on it; ``fingerprint``
reads only metadata (feature-set status, stats and stored row count; the run's checkpoint file) so a
cache can tell cheaply whether the vectors changed since its index was built.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from storage import Database
from storage.features import FeatureSetRecord, get_feature_set, list_feature_sets, read_features, stored_items
from storage.runs import get_run, list_runs


@dataclass(frozen=True)
class Source:
    """``kind="features"``: ``feature_set`` (id) at ``layers`` (tuple; several = their mean; empty = all).
    ``kind="run"``: the item vectors of run ``run_id``."""

    kind: str
    feature_set: int | None = None
    layers: tuple[int, ...] = ()
    run_id: int | None = None

    @property
    def key(self) -> str:
        if self.kind == "run":
            return f"run:{self.run_id}"
        return f"fs:{self.feature_set}:" + (",".join(str(l) for l in self.layers) or "all")

    @classmethod
    def from_key(cls, key: str) -> "Source":
        """Inverse of ``key`` (caches and widgets pass keys, not objects)."""
        parts = key.split(":")
        if parts[0] == "run" and len(parts) == 2:
            return cls("run", run_id=int(parts[1]))
        if parts[0] == "fs" and len(parts) == 3:
            layers = () if parts[2] == "all" else tuple(int(l) for l in parts[2].split(","))
            return cls("features", feature_set=int(parts[1]), layers=layers)
        raise ValueError(f"not a representation key: {key!r}")


def layers_label(layers: tuple[int, ...] | list[int], num_layers: int | None = None) -> str:
    """``L12`` | ``L8-20 mean`` | ``L1,4,9 mean`` | ``all layers mean`` (one layer sets: empty)."""
    layers = list(layers)
    if num_layers == 1:
        return ""
    if not layers or (num_layers and layers == list(range(num_layers))):
        return "all layers mean"
    if len(layers) == 1:
        return f"L{layers[0]}"
    if layers == list(range(layers[0], layers[-1] + 1)):
        return f"L{layers[0]}-{layers[-1]} mean"
    return "L" + ",".join(str(l) for l in layers) + " mean"


def feature_source(db: Database, feature_set: str | int, layers: str | list[int] | None = None,
                   dataset: str | int | None = None) -> Source:
    """A feature-set source with its layer choice checked (``all``, ``L``, ``A-B`` or ``i,j,k``)."""
    from dff_core.workflows import parse_layers

    fs = get_feature_set(db, feature_set, dataset=dataset if not str(feature_set).isdigit() else None)
    chosen = parse_layers(layers, fs.num_layers)
    return Source("features", feature_set=fs.id, layers=tuple(chosen or ()))


def run_source(db: Database, run_id: int) -> Source:
    from dff_core.neighbours.runs import checkpoint_path

    run = get_run(db, run_id)
    if run.status != "done":
        raise ValueError(f"run {run.id} is {run.status}; only finished runs have item vectors to explore")
    if not checkpoint_path(db, run.id).exists():
        raise ValueError(f"run {run.id} has no checkpoint at {checkpoint_path(db, run.id)}; train it again to "
                         "explore its item vectors")
    return Source("run", run_id=run.id)


def describe(db: Database, source: Source) -> str:
    """A short human label: ``smollm2 · L12`` / ``run #4 · dff (smollm2 L8-20)``."""
    if source.kind == "run":
        run = get_run(db, source.run_id)
        fs_name = run.config.get("feature_set")
        return f"run #{run.id} · {run.strategy}" + (f" ({fs_name})" if fs_name and run.strategy != "id" else "")
    fs = get_feature_set(db, source.feature_set)
    label = layers_label(source.layers, fs.num_layers)
    return f"{fs.name} · {label}" if label else fs.name


def dataset_of(db: Database, source: Source) -> int:
    if source.kind == "run":
        return get_run(db, source.run_id).dataset_id
    return get_feature_set(db, source.feature_set).dataset_id


def _stored_count(db: Database, fs: FeatureSetRecord) -> int:
    if fs.storage != "duckdb":
        return len(stored_items(db, fs))
    with db.session() as conn:
        raw = Database.raw(conn)
        return int(raw.execute(f"SELECT count(*) FROM {fs.location}").fetchall()[0][0])


def fingerprint(db: Database, source: Source) -> str:
    """Changes whenever the vectors behind ``source`` may have changed (cheap: metadata only)."""
    if source.kind == "run":
        from dff_core.neighbours.runs import checkpoint_path

        run = get_run(db, source.run_id)
        path = checkpoint_path(db, run.id)
        stat = path.stat() if path.exists() else None
        parts = [run.id, run.status, str(run.finished_at), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0]
    else:
        fs = get_feature_set(db, source.feature_set)
        parts = [fs.id, str(fs.created_at), fs.status, json.dumps(fs.stats, sort_keys=True, default=str),
                 _stored_count(db, fs), list(source.layers)]
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def load_vectors(db: Database, source: Source) -> tuple[np.ndarray, np.ndarray]:
    """``[num_items, dim]`` float32 vectors and the mask of items that have one."""
    if source.kind == "run":
        from dff_core.neighbours.cache import get_run_model

        return get_run_model(db, source.run_id).item_vectors(), None
    fs = get_feature_set(db, source.feature_set)
    layers = list(source.layers) or list(range(fs.num_layers))
    feats, present = read_features(db, fs, layers=layers)
    if not present.any():
        raise ValueError(f"feature set {fs.name!r} has no vectors stored yet")
    return feats.mean(axis=1), present


def available_sources(db: Database, dataset: str | int) -> list[tuple[str, object]]:
    """What can be explored for a dataset: ``("features", FeatureSetRecord)`` for sets with vectors and
    ``("run", RunRecord)`` for finished runs with a checkpoint, in creation order."""
    from dff_core.neighbours.runs import checkpoint_path
    from storage.datasets import get_dataset

    ds = get_dataset(db, dataset)
    out: list[tuple[str, object]] = [("features", fs) for fs in list_feature_sets(db, ds.id)
                                     if fs.status != "failed" and _stored_count(db, fs) > 0]
    out += [("run", r) for r in list_runs(db, ds.id) if r.status == "done" and checkpoint_path(db, r.id).exists()]
    return out
