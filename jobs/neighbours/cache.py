"""Indices and run models are built once per process and reused: an LRU keyed by database file and
source, validated by the source's fingerprint, so a changed feature set or a retrained run rebuilds.

Optionally (``disk=True``) approximate indices are also written next to the database
(``<db dir>/neighbours/<key>-<fingerprint>.faiss``): HNSW graphs take seconds to build on large
catalogues, flat indices are cheaper to rebuild than to read.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import faiss
import numpy as np

from dff_core.neighbours.index import DEFAULT_METRIC, NeighbourIndex, build_index, check_metric, normalise, recall_at_k
from jobs.neighbours.models import load_run_model, save_run_vectors, stored_run_vectors
from jobs.neighbours.sources import Source, fingerprint
from storage import Database
from storage.features import get_feature_set, read_features

MAX_ENTRIES = 16
_lock = threading.Lock()
_indices: "OrderedDict[tuple[str, str], NeighbourIndex]" = OrderedDict()
_models: "OrderedDict[tuple[str, int], tuple[str, object]]" = OrderedDict()
stats = {"builds": 0, "hits": 0, "disk_loads": 0}


def clear() -> None:
    with _lock:
        _indices.clear()
        _models.clear()


def _disk_path(db: Database, source: Source, fp: str, metric: str = DEFAULT_METRIC) -> Path:
    tag = "" if metric == "raw" else f"_{metric}"  # raw-cosine graphs keep the name they had before centring
    return db.side_dir("neighbours") / f"{source.key.replace(':', '_').replace(',', '-')}{tag}-{fp}.faiss"


def get_index(db: Database, source: Source, *, kind: str = "auto", exact_max_items: int | None = None,
              disk: bool = False, metric: str = DEFAULT_METRIC) -> NeighbourIndex:
    """The cached index for ``source`` under ``metric`` (``centred`` or ``raw`` cosine,
    ``dff_core.neighbours.index``); built (or read from disk) when missing or when its fingerprint no longer
    matches the stored data."""
    fp = fingerprint(db, source)
    key = (str(db.path), f"{source.key}|{kind}|{exact_max_items}|{check_metric(metric)}")
    with _lock:
        hit = _indices.get(key)
        if hit is not None and hit.fingerprint == fp:
            _indices.move_to_end(key)
            stats["hits"] += 1
            return hit
    vectors, present = load_vectors(db, source)
    index = None
    path = _disk_path(db, source, fp, metric)
    if disk and path.exists():
        index = _read(path, vectors, present, fp, metric)
    if index is None:
        index = build_index(vectors, present, kind=kind, exact_max_items=exact_max_items, fingerprint=fp,
                            metric=metric)
        stats["builds"] += 1
        if disk and index.kind != "exact":
            path.parent.mkdir(parents=True, exist_ok=True)
            for old in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.faiss"):
                old.unlink(missing_ok=True)  # an earlier fingerprint of the same source
            tmp = path.with_suffix(".tmp")
            faiss.write_index(index.index, str(tmp))
            tmp.replace(path)
    with _lock:
        _indices[key] = index
        _indices.move_to_end(key)
        while len(_indices) > MAX_ENTRIES:
            _indices.popitem(last=False)
    return index


def _read(path: Path, vectors: np.ndarray, present: np.ndarray | None, fp: str,
          metric: str = DEFAULT_METRIC) -> NeighbourIndex | None:
    x, ok = normalise(vectors, metric, present)
    try:
        raw = faiss.read_index(str(path))
    except RuntimeError:
        return None
    ids = np.flatnonzero(ok).astype(np.int64)
    if raw.ntotal != len(ids) or raw.d != x.shape[1]:
        return None
    stats["disk_loads"] += 1
    index = NeighbourIndex(kind="hnsw", index=raw, vectors=x, ids=ids, present=ok, fingerprint=fp, metric=metric)
    index.recall_at_10 = recall_at_k(index)
    return index


def get_run_model(db: Database, run_id: int):
    """The run's rebuilt model (``runs.RunModel``), cached like the indices."""
    fp = fingerprint(db, Source("run", run_id=int(run_id)))
    key = (str(db.path), int(run_id))
    with _lock:
        hit = _models.get(key)
        if hit is not None and hit[0] == fp:
            _models.move_to_end(key)
            return hit[1]
    model = load_run_model(db, run_id)
    with _lock:
        _models[key] = (fp, model)
        while len(_models) > MAX_ENTRIES // 2:
            _models.popitem(last=False)
    return model


def load_vectors(db: Database, source: Source) -> tuple[np.ndarray, np.ndarray]:
    """``[num_items, dim]`` float32 vectors and the mask of items that have one."""
    if source.kind == "run":
        vectors = stored_run_vectors(db, source.run_id)  # kept at the end of training: no torch, no model
        if vectors is None:
            vectors = get_run_model(db, source.run_id).item_vectors()
            save_run_vectors(db, source.run_id, vectors)
        return vectors, None
    fs = get_feature_set(db, source.feature_set)
    layers = list(source.layers) or list(range(fs.num_layers))
    feats, present = read_features(db, fs, layers=layers)
    if not present.any():
        raise ValueError(f"feature set {fs.name!r} has no vectors stored yet")
    return feats.mean(axis=1), present
