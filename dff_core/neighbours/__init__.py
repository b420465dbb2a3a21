"""Nearest neighbours of items under any representation, and per-user recommendations of runs: the maths.

``index`` builds faiss cosine indices (exact or HNSW, with measured recall); ``runs`` holds a trained
model's item vectors and recommendations; ``explore`` holds the catalogue, co-occurrence and agreement used
by the Explore page. Reading representations from storage (and caching their indices) is
``jobs.neighbours``.
"""
from __future__ import annotations

from .explore import Catalog, agreement, overlap_at_k, placeholder
from .index import NeighbourIndex, build_index, exact_search, recall_at_k
from .runs import Recommendation, RunModel

__all__ = ["Catalog", "NeighbourIndex", "Recommendation", "RunModel", "agreement", "build_index", "exact_search",
           "overlap_at_k", "placeholder", "recall_at_k"]
