"""Neighbour search at catalogue scale: index build time and query latency, exact (IndexFlatIP) vs
approximate (HNSW), with recall@10 against exact, for ~20,000 items x 576 dims.

Vectors: one layer of a stored, complete feature set (``--db FILE --features NAME [--dataset D]``, e.g.
SmolLM2 title features of MicroLens-50k), else synthetic clustered vectors of the same shape. ``--browser`` also times the Explore page in Chromium on a 20,000-item catalogue
(pick a video -> neighbours shown), cold (index built on the way) and warm.

    PYTHONPATH=. .venv/bin/python bench/bench_neighbours.py [--db F --features NAME --layer 15] [--items 20000] [--browser]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from dff_core.neighbours.index import build_index, exact_search  # noqa: E402

def real_vectors(db_path: str, name: str, dataset: str | None, layer: int) -> tuple[np.ndarray, np.ndarray, str] | None:
    """One layer of a stored feature set, when the set is complete."""
    from storage import Database
    from storage.features import get_feature_set, read_features

    if not Path(db_path).exists():
        print(f"(no database at {db_path}; using synthetic vectors)")
        return None
    db = Database(db_path)
    try:
        fs = get_feature_set(db, name, dataset=dataset)
    except Exception as exc:  # not there (yet)
        print(f"(no features {name!r}: {exc}; using synthetic vectors)")
        return None
    if fs.status != "complete":
        print(f"(feature set {name!r} is {fs.status}; using synthetic vectors)")
        return None
    feats, present = read_features(db, fs, layers=[layer])
    return feats[:, 0], present, f"feature set {name!r}, layer {layer} ({fs.num_layers} layers)"


def synthetic_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Clustered like text embeddings: a shared mean direction, 300 topics of long-tailed sizes, noise."""
    rng = np.random.default_rng(seed)
    topics = 300
    sizes = rng.zipf(1.6, size=topics).astype(float)
    topic = rng.choice(topics, size=n, p=sizes / sizes.sum())
    centres = rng.normal(size=(topics, dim))
    common = rng.normal(size=dim) * 2.0
    return (common + centres[topic] + 0.8 * rng.normal(size=(n, dim))).astype(np.float32)


def latency(index, queries: np.ndarray, k: int = 10) -> tuple[float, float, float]:
    """(p50 ms, p95 ms) of single-item queries and (ms per query) of one batched call."""
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(int(q), k)
        times.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    index.search_many(queries, k)
    batch = (time.perf_counter() - t0) * 1000 / len(queries)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), batch


def bench_indices(x: np.ndarray, present: np.ndarray | None, queries: int) -> None:
    import faiss

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    rng = np.random.default_rng(1)
    n = len(x)
    t0 = time.perf_counter()
    truth_sample = rng.choice(np.flatnonzero(present) if present is not None else np.arange(n), 200, replace=False)
    exact_search(x, truth_sample[:50], 10, present=present)
    numpy_ms = (time.perf_counter() - t0) * 1000 / 50
    print(f"numpy brute force (normalise + matmul + argsort): {numpy_ms:.1f} ms per query")
    for kind in ("exact", "hnsw"):
        index = build_index(x, present, kind=kind, recall_queries=1000)
        sample = rng.choice(index.ids, size=min(queries, index.size), replace=False)
        latency(index, sample[:20])  # warm up
        p50, p95, batch = latency(index, sample)
        recall = "1.000 (by definition)" if index.recall_at_10 is None else f"{index.recall_at_10:.3f}"
        print(f"{kind:>5}: build {index.build_seconds:6.2f} s | single query p50 {p50:6.3f} ms, p95 {p95:6.3f} ms | "
              f"batched {batch:6.3f} ms/query | recall@10 vs exact {recall} (1000 queries) | {index.size} items")


def bench_browser(x: np.ndarray) -> None:
    """The Explore page on a synthetic 20k-item catalogue with these vectors as a one-layer feature set."""
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    from browser_helpers import chromium_path, open_page, running_app, wait_for_app
    from playwright.sync_api import sync_playwright

    from jobs.datasets import import_generic
    from jobs.workflows import import_features_npz
    from storage import Database

    if chromium_path() is None:
        print("browser: no Chromium, skipped")
        return
    n = len(x)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(2)
        (tmp / "items.csv").write_text("item_id,title\n" + "".join(f"v{i},video number {i}\n" for i in range(n)))
        users = 6000
        lines = ["user_id,item_id,timestamp"]
        order = rng.permutation(n)               # every item is watched by someone (else the import drops it)
        for u in range(users):
            own = list(order[u::users])
            extra = [i for i in rng.choice(n, size=8, replace=False) if i not in own]
            for t, i in enumerate((own + extra)[:max(8, len(own))]):
                lines.append(f"u{u},v{i},{t}")
        (tmp / "inter.csv").write_text("\n".join(lines) + "\n")
        db = Database(tmp / "dff.duckdb")
        t0 = time.perf_counter()
        import_generic(db, "big", tmp / "inter.csv", tmp / "items.csv")
        np.savez(tmp / "f.npz", item_ids=np.array([f"v{i}" for i in range(n)]), features=x[:, None, :])
        import_features_npz(db, "title-features", "big", tmp / "f.npz")
        print(f"browser: catalogue of {n} items stored in {time.perf_counter() - t0:.1f} s")
        with running_app(db.path, worker=False) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(180_000)
            print(f"browser: Explore first open (index build included) {open_page(page, base, 'explore'):.2f} s")
            main = page.locator('[data-testid="stMain"]')
            for item in (123, 4567, 9876):
                search = main.get_by_label("Search by title or id")
                search.fill(f"v{item}")
                search.press("Enter")
                wait_for_app(page)
                t0 = time.perf_counter()
                main.get_by_role("combobox", name="Video").click()
                page.get_by_role("option").filter(has_text=f"video number {item} · v{item}").first.click()
                page.get_by_role("heading", name=f"video number {item}").wait_for()
                main.get_by_text("· cos ").first.wait_for()
                shown = time.perf_counter() - t0
                wait_for_app(page)
                print(f"browser: pick video v{item} -> neighbours shown {shown:.2f} s, page settled "
                      f"{time.perf_counter() - t0:.2f} s")
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000, help="synthetic catalogue size")
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--db", default=None, help="database holding real features (default: synthetic vectors)")
    parser.add_argument("--features", default="smollm2-title", help="feature set name in --db")
    parser.add_argument("--dataset", default=None, help="dataset of --features, when several have that name")
    parser.add_argument("--layer", type=int, default=15, help="layer of the real features")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--synthetic", action="store_true", help="never use the real features")
    parser.add_argument("--browser", action="store_true", help="also time the Explore page in Chromium")
    args = parser.parse_args()
    real = None if args.synthetic or not args.db else real_vectors(args.db, args.features, args.dataset, args.layer)
    if real is not None:
        x, present, what = real
    else:
        x, present, what = synthetic_vectors(args.items, args.dim), None, "synthetic clustered vectors"
    print(f"{what}: {x.shape[0]} items x {x.shape[1]} dims")
    bench_indices(x, present, args.queries)
    if args.browser:
        bench_browser(x if present is None else x[present])


if __name__ == "__main__":
    main()
