"""Nearest neighbours of items under any stored representation, and per-user recommendations of runs: the
storage side of ``dff_core.neighbours`` (one import for the Explore page and the ``neighbours`` command).

``sources`` says what a representation is (feature set + layers, or a run's item vectors); ``cache`` reads
its vectors and keeps its faiss index per process; ``models`` rebuilds a trained run; ``catalog`` reads a
dataset's items with media and popularity.
"""
from __future__ import annotations

from dff_core.neighbours import (Catalog, NeighbourIndex, Recommendation, RunModel, agreement, build_index,
                                 exact_search, overlap_at_k, placeholder, recall_at_k)
from dff_core.neighbours.explore import thumbnail
from dff_core.neighbours.index import DEFAULT_METRIC, METRIC_LABELS, METRICS, score_digits
from storage import Database

from .cache import get_index, get_run_model, load_vectors
from .catalog import load_catalog
from .models import checkpoint_path, load_run_model
from .sources import (Source, available_sources, dataset_of, describe, feature_source, fingerprint, layers_label,
                      run_source)

__all__ = ["DEFAULT_METRIC", "METRICS", "METRIC_LABELS", "score_digits", "Catalog", "NeighbourIndex", "Recommendation", "RunModel", "Source", "agreement", "available_sources",
           "build_index", "checkpoint_path", "dataset_of", "describe", "exact_search",
           "feature_source", "fingerprint", "get_index", "get_run_model", "layers_label", "load_catalog",
           "load_run_model", "load_vectors", "neighbours_of", "overlap_at_k", "placeholder", "recall_at_k",
           "run_source", "thumbnail"]


def neighbours_of(db: Database, source: Source, item_id: str, k: int = 10,
                  catalog: Catalog | None = None, metric: str = DEFAULT_METRIC) -> list[dict]:
    """``[{item_id, score}]`` best first, the query item excluded (what ``neighbours --json`` prints); the score
    is the cosine of centred vectors, or raw cosine with ``metric="raw"``."""
    if k < 1:
        raise ValueError("k must be at least 1")
    catalog = catalog or load_catalog(db, dataset_of(db, source))
    item = catalog.index_of(item_id)
    index = get_index(db, source, metric=metric)
    if not index.present[item]:
        raise ValueError(f"item {item_id!r} has no vector in {describe(db, source)} (its extraction failed or "
                         "has not run yet)")
    ids, scores = index.search(item, k)
    item_ids = catalog.items["item_id"].to_numpy()
    return [{"item_id": str(item_ids[i]), "score": round(float(s), 6)} for i, s in zip(ids, scores)]
