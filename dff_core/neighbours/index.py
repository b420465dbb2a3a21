"""Cosine nearest-neighbour indices over item vectors (faiss, inner product of L2-normalised rows).

Cosine of *centred* vectors by default (``metric="centred"``: the mean of the indexed rows is removed before
normalising), raw cosine on request (``metric="raw"``), or centred with a few dominant directions removed (``metric="top-removed"``). Why: mean-pooled LLM hidden states share one dominant
direction, so raw cosine says little: on the MicroLens titles' SmolLM2 layer 15 two random videos have raw
cosine 0.997 on average and every neighbour reads 0.9998-0.9999, while after removing the layer's mean they
have 0.11 (top-10 neighbours 0.96 ± 0.12). Centring keeps what tells items apart; the layer usefulness score
(``dff_core.probes``) centres the same way. ``dff_core.neighbours.quality`` measures it on a planted set.

Small catalogues get an exact ``IndexFlatIP`` (brute force is milliseconds there and never wrong);
above ``exact_max_items`` an HNSW graph answers in well under a millisecond per query, and its
recall@10 against exact search is measured on a sample of queries when the index is built, so the
dashboard and the benchmark can say how approximate "approximate" is.

Rows are dataset item indices. Items without a vector (failed extraction: an all-zero row, or
``present=False``) are left out of the index and cannot be queried.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import faiss
import numpy as np

# Exact search over 50k x 576 is a few ms per query (bench/bench_neighbours.py) while an HNSW graph of 20k
# items takes tens of seconds to build on two cores: exact up to here, approximate above.
EXACT_MAX_ITEMS = int(os.environ.get("DFF_EXACT_MAX_ITEMS", "50000"))
HNSW_M = 32                 # graph degree: higher = better recall, more memory and build time
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128        # candidate list at query time: recall@10 stays ~0.99 on 576-d text features
RECALL_QUERIES = 200
# Fewer queries than this run single-threaded: one query has nothing to split, and OpenMP's spin-waiting
# threads made a single exact 20k x 576 query ~10x slower on a busy two-core machine (bench_neighbours.py).
SMALL_BATCH = 16


METRICS = ("centred", "top-removed", "raw")
DEFAULT_METRIC = "centred"
TOP_DIRECTIONS = 5
METRIC_LABELS = {"centred": "cosine of centred vectors",
                 "top-removed": f"cosine of centred vectors, {TOP_DIRECTIONS} dominant directions removed",
                 "raw": "raw cosine"}


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"similarity must be one of {', '.join(METRICS)}, not {metric!r}")
    return metric


def normalise(vectors: np.ndarray, metric: str = "raw", present: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Unit-length float32 rows and a mask of rows that had a usable (finite, non-zero, ``present``) vector.

    ``metric="centred"`` first removes the mean of the usable rows (computed in float64), so inner products
    are cosines around the representation's centre; a row equal to that mean becomes all zeros (it scores 0
    against everything, and stays usable). ``metric="top-removed"`` also projects out the ``TOP_DIRECTIONS``
    principal directions of the centred rows ("all but the top": a few directions of huge variance carry no
    topic in LLM hidden states). Unusable rows are all zeros either way."""
    check_metric(metric)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"item vectors must be [items, dim], got shape {list(x.shape)}")
    norms = np.linalg.norm(x, axis=1)
    ok = np.isfinite(norms) & (norms > 0)
    if present is not None:
        ok &= np.asarray(present, dtype=bool)
    if metric != "raw" and ok.any():
        x = np.where(ok[:, None], x - x[ok].mean(axis=0, dtype=np.float64).astype(np.float32), 0.0)
        if metric == "top-removed":
            x = remove_top_directions(x, ok, TOP_DIRECTIONS)
        norms = np.linalg.norm(x, axis=1)
    unit = ok & (norms > 0)
    x = np.where(unit[:, None], x / np.where(unit, norms, 1.0)[:, None], 0.0).astype(np.float32)
    return np.ascontiguousarray(x), ok


def remove_top_directions(x: np.ndarray, ok: np.ndarray, count: int) -> np.ndarray:
    """``x`` (centred rows) without its ``count`` principal directions, estimated on the ``ok`` rows (an
    eigendecomposition of the dim × dim scatter: cheap for any catalogue size)."""
    rows = x[ok].astype(np.float64)
    count = min(count, max(0, min(rows.shape) - 1))
    if count == 0:
        return x
    _, vecs = np.linalg.eigh(rows.T @ rows)
    top = vecs[:, -count:].astype(np.float32)
    return (x - (x @ top) @ top.T).astype(np.float32)


def score_digits(scores, least: int = 3, most: int = 6) -> int:
    """Decimals that tell a neighbour list's scores apart: the fewest from ``least`` up to ``most`` at which
    no two neighbouring (sorted) scores print alike, so a list never reads "1.000" five times when the scores
    differ in the fourth decimal."""
    values = sorted((float(v) for v in scores if v == v), reverse=True)
    pairs = [(a, b) for a, b in zip(values, values[1:]) if a - b > 10 ** -most]  # ties stay ties
    for digits in range(least, most + 1):
        if all(f"{a:.{digits}f}" != f"{b:.{digits}f}" for a, b in pairs):
            return digits
    return most


@dataclass
class NeighbourIndex:
    """A built index plus what it was built from; ``search`` takes and returns dataset item indices."""

    kind: str                      # "exact" (IndexFlatIP) or "hnsw"
    index: faiss.Index = field(repr=False)
    vectors: np.ndarray = field(repr=False)   # [num_items, dim] centred (metric "centred") and normalised
    ids: np.ndarray = field(repr=False)       # faiss row -> dataset item index
    present: np.ndarray = field(repr=False)   # [num_items] bool
    build_seconds: float = 0.0
    recall_at_10: float | None = None         # approximate kinds only: vs exact, on a query sample
    fingerprint: str = ""
    metric: str = DEFAULT_METRIC              # "centred" or "raw": what the scores are the cosine of

    @property
    def num_items(self) -> int:
        return len(self.present)

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def check_item(self, item: int) -> None:
        if not 0 <= int(item) < self.num_items:
            raise ValueError(f"item index {item} is outside 0..{self.num_items - 1}")
        if not self.present[int(item)]:
            raise ValueError(f"item index {item} has no vector in this representation (its extraction failed "
                             "or has not run yet)")

    def search(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` neighbours of one item, best first, the item itself excluded: (item indices, cosine)."""
        ids, scores = self.search_many(np.array([item]), k)
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def search_many(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """``[len(items), k]`` neighbour item indices (-1 where fewer exist) and cosines; queries excluded."""
        items = np.asarray(items, dtype=np.int64)
        for item in items:
            self.check_item(int(item))
        if k < 1:
            raise ValueError("k must be at least 1")
        return self._search(self.vectors[items], items, k)

    def _raw_search(self, queries: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss-style (scores, rows into ``ids``) for normalised ``queries``."""
        if len(queries) >= SMALL_BATCH:
            return self.index.search(queries, want)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(queries, want)
        finally:
            faiss.omp_set_num_threads(threads)

    def _search(self, queries: np.ndarray, exclude: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        want = min(k + 1, self.size)
        scores, rows = self._raw_search(np.ascontiguousarray(queries, dtype=np.float32), want)
        found = np.where(rows >= 0, self.ids[np.maximum(rows, 0)], -1)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.full((len(queries), k), np.nan, dtype=np.float32)
        for q in range(len(queries)):
            keep = (found[q] >= 0) & (found[q] != exclude[q])
            ids, sc = found[q][keep][:k], scores[q][keep][:k]
            out_ids[q, :len(ids)] = ids
            out_scores[q, :len(ids)] = sc
        return out_ids, out_scores


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int, present: np.ndarray | None = None,
                 metric: str = DEFAULT_METRIC) -> tuple[np.ndarray, np.ndarray]:
    """Reference brute-force cosine top-``k`` in numpy (queries are item indices, excluded from their list)."""
    x, ok = normalise(vectors, metric, present)
    sims = x[queries] @ x.T
    sims[:, ~ok] = -np.inf
    sims[np.arange(len(queries)), queries] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def no_variance_check(vectors: np.ndarray, present: np.ndarray | None = None) -> None:
    """ValueError in one line when the stored vectors (``present`` rows, finite) are all the same — all zeros or one
    constant vector: such a representation has no neighbours to tell apart (every cosine ties), so it is refused
    with the reason instead of reading as "no item has vectors" or listing index order at score 1.0."""
    x = np.asarray(vectors)
    # without ``present`` an all-zero row means "no vector" (module docstring); with it, zeros were stored
    rows = x[np.abs(x).sum(axis=1) > 0] if present is None else x[np.asarray(present, dtype=bool)]
    rows = rows[np.isfinite(rows).all(axis=1)] if len(rows) else rows
    if len(rows) >= 2 and float(np.ptp(rows, axis=0).max()) == 0.0:
        what = "all zeros" if not np.any(rows[0]) else "one constant vector"
        raise ValueError(f"all {len(rows):,} stored vectors here are {what}: a representation without variance "
                         "cannot tell items apart, so it has no neighbours (a layer like this scores as no signal)")


def build_index(vectors: np.ndarray, present: np.ndarray | None = None, *, kind: str = "auto",
                exact_max_items: int | None = None, fingerprint: str = "",
                recall_queries: int = RECALL_QUERIES, seed: int = 0, metric: str = DEFAULT_METRIC) -> NeighbourIndex:
    """Build a cosine index over ``vectors [num_items, dim]``; ``kind`` is ``exact``, ``hnsw`` or ``auto``
    (exact up to ``exact_max_items`` indexed items, HNSW above); ``metric``: ``centred`` or ``raw`` cosine."""
    start = time.perf_counter()
    no_variance_check(vectors, present)
    x, ok = normalise(vectors, metric, present)
    ids = np.flatnonzero(ok).astype(np.int64)
    if len(ids) < 2:
        raise ValueError("fewer than two items have vectors; nothing to compare (extract features first)")
    limit = EXACT_MAX_ITEMS if exact_max_items is None else exact_max_items
    if kind == "auto":
        kind = "exact" if len(ids) <= limit else "hnsw"
    d = x.shape[1]
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        raise ValueError(f"index kind must be exact, hnsw or auto, not {kind!r}")
    index.add(np.ascontiguousarray(x[ids]))
    built = NeighbourIndex(kind=kind, index=index, vectors=x, ids=ids, present=ok,
                           build_seconds=time.perf_counter() - start, fingerprint=fingerprint, metric=metric)
    if kind != "exact" and recall_queries > 0:
        built.recall_at_10 = recall_at_k(built, k=10, queries=recall_queries, seed=seed)
    return built


def recall_at_k(index: NeighbourIndex, k: int = 10, queries: int = RECALL_QUERIES, seed: int = 0) -> float:
    """Mean fraction of the exact top-``k`` (flat inner product) that ``index`` also returns, over a
    seeded sample of indexed items as queries (the query itself excluded on both sides)."""
    rng = np.random.default_rng(seed)
    sample = rng.choice(index.ids, size=min(queries, index.size), replace=False)
    flat = faiss.IndexFlatIP(index.dim)
    flat.add(np.ascontiguousarray(index.vectors[index.ids]))
    exact = NeighbourIndex(kind="exact", index=flat, vectors=index.vectors, ids=index.ids, present=index.present,
                           metric=index.metric)
    truth, _ = exact.search_many(sample, k)
    got, _ = index.search_many(sample, k)
    hits = [len(set(t[t >= 0]) & set(g[g >= 0])) / max(1, int((t >= 0).sum())) for t, g in zip(truth, got)]
    return float(np.mean(hits))
