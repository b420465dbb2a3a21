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


from dff_core.layers import parse_layers
from jobs.neighbours.models import checkpoint_path, checkpoint_stamp
from storage import Database
from storage.datasets import get_dataset
from storage.features import FeatureSetRecord, get_feature_set, list_feature_sets, stored_items
from storage.runs import get_run, list_runs
from storage.views import layers_text


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
    """``L12`` | ``L8-20 mean`` | ``L1,4,9 mean`` | ``all layers mean`` (one layer sets: empty): the layer
    choice as ``storage.views.layers_text`` writes it, marked as a layer and as a mean of several."""
    layers = list(layers)
    if num_layers == 1:
        return ""
    text = layers_text(layers or None, num_layers)
    if text == "all":
        return "all layers mean"
    return f"L{text}" + ("" if len(layers) == 1 else " mean")


def feature_source(db: Database, feature_set: str | int, layers: str | list[int] | None = None,
                   dataset: str | int | None = None) -> Source:
    """A feature-set source with its layer choice checked (``all``, ``L``, ``A-B`` or ``i,j,k``)."""
    fs = get_feature_set(db, feature_set, dataset=dataset if not str(feature_set).isdigit() else None)
    chosen = parse_layers(layers, fs.num_layers)
    return Source("features", feature_set=fs.id, layers=tuple(chosen or ()))


def run_source(db: Database, run_id: int) -> Source:
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
        run = get_run(db, source.run_id)
        parts = [run.id, run.status, str(run.finished_at), *(checkpoint_stamp(db, run.id) or (0, 0))]
    else:
        fs = get_feature_set(db, source.feature_set)
        parts = [fs.id, str(fs.created_at), fs.status, json.dumps(fs.stats, sort_keys=True, default=str),
                 _stored_count(db, fs), list(source.layers)]
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def available_sources(db: Database, dataset: str | int) -> list[tuple[str, object]]:
    """What can be explored for a dataset: ``("features", FeatureSetRecord)`` for sets with vectors and
    ``("run", RunRecord)`` for finished runs with a checkpoint, in creation order."""
    ds = get_dataset(db, dataset)
    out: list[tuple[str, object]] = [("features", fs) for fs in list_feature_sets(db, ds.id)
                                     if fs.status != "failed" and _stored_count(db, fs) > 0]
    out += [("run", r) for r in list_runs(db, ds.id) if r.status == "done" and checkpoint_path(db, r.id).exists()]
    return out
