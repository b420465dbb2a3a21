"""Nearest neighbours of items under any stored representation, and per-user recommendations of runs.

``sources`` says what a representation is (feature set + layers, or a run's item vectors) and reads
its vectors; ``index`` builds faiss cosine indices (exact or HNSW, with measured recall); ``cache``
keeps them per process; ``runs`` rebuilds a trained model; ``explore`` holds the catalogue,
co-occurrence and agreement used by the Explore page.
"""
from __future__ import annotations

from storage import Database

from .cache import get_index, get_run_model
from .explore import Catalog, agreement, load_catalog, overlap_at_k, placeholder
from .index import NeighbourIndex, build_index, exact_search, recall_at_k
from .runs import Recommendation, RunModel, checkpoint_path, load_run_model
from .sources import (Source, available_sources, dataset_of, describe, feature_source, fingerprint, layers_label,
                      load_vectors, run_source)

__all__ = ["Catalog", "NeighbourIndex", "Recommendation", "RunModel", "Source", "agreement", "available_sources",
           "build_index", "checkpoint_path", "dataset_of", "describe", "exact_search", "feature_source",
           "fingerprint", "get_index", "get_run_model", "layers_label", "load_catalog", "load_run_model",
           "load_vectors", "neighbours_of", "overlap_at_k", "placeholder", "recall_at_k", "run_source"]


def neighbours_of(db: Database, source: Source, item_id: str, k: int = 10,
                  catalog: Catalog | None = None) -> list[dict]:
    """``[{item_id, score}]`` best first, the query item excluded (what ``neighbours --json`` prints)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    catalog = catalog or load_catalog(db, dataset_of(db, source))
    item = catalog.index_of(item_id)
    index = get_index(db, source)
    if not index.present[item]:
        raise ValueError(f"item {item_id!r} has no vector in {describe(db, source)} (its extraction failed or "
                         "has not run yet)")
    ids, scores = index.search(item, k)
    item_ids = catalog.items["item_id"].to_numpy()
    return [{"item_id": str(item_ids[i]), "score": round(float(s), 6)} for i, s in zip(ids, scores)]
