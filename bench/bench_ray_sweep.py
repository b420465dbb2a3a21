"""A 6-run demo sweep on the local engine vs local Ray (2 workers), and an estimate for a MicroLens study on GPUs.

    PYTHONPATH=. .venv/bin/python bench/bench_ray_sweep.py [--epochs 5] [--db FILE --dataset D --features F]

* sweep — ``id, gate, dff`` x seeds 1, 2 (6 runs, all layers, ``--epochs`` each, one torch thread per run) on
  the built-in demo dataset (2,000 users, 300 clips; built in a temporary folder unless ``--db`` is given) with
  a demo-shaped feature set (31 layers x 576, as SmolLM2 titles; random values: the training cost does not
  depend on them). Local engine: the runs one after another in this process (what the job worker does, less
  the per-job process start). Ray: ``jobs.ray_sweep.run_sweep_ray`` on a fresh local instance with 2 CPUs,
  start-up included, the job's work as in production (one read, object store, driver writes). Both store
  their runs; the test metrics of matching runs are compared.
* estimate — wall time of a 100-run MicroLens-50k study on 8 GPUs, from stated assumptions (printed).

Prints numbers; asserts nothing. On a shared machine the numbers are indicative: the load is printed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs.workflows import import_features_npz, run_training  # noqa: E402
from jobs.handlers import expand_sweep  # noqa: E402
from storage import Database  # noqa: E402
from storage.runs import list_runs  # noqa: E402


def demo_db(folder: Path) -> tuple[Database, str, str]:
    from jobs.datasets import DEMO_NAME, ensure_demo
    from storage.datasets import get_dataset, load_items

    db = Database(folder / "bench.duckdb")
    t = time.perf_counter()
    ds = ensure_demo(db)
    items = load_items(db, get_dataset(db, DEMO_NAME).id)
    rng = np.random.default_rng(0)
    np.savez(folder / "f.npz", item_ids=np.asarray(items["item_id"].tolist(), dtype=str),
             features=rng.normal(size=(len(items), 31, 576)).astype(np.float16))
    import_features_npz(db, "demo-shaped", DEMO_NAME, folder / "f.npz", backbone="synthetic")
    print(f"demo dataset: {ds.stats['users']} users, {ds.stats['items']} items; features 31 x 576 "
          f"({time.perf_counter() - t:.1f} s to build)")
    return db, DEMO_NAME, "demo-shaped"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--db", default=None)
    ap.add_argument("--dataset", default="demo")
    ap.add_argument("--features", default=None)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (shared machine: indicative)")
    tmp = tempfile.TemporaryDirectory()
    if args.db:
        db, dataset, features = Database(args.db), args.dataset, args.features
    else:
        db, dataset, features = demo_db(Path(tmp.name))
    settings = {"epochs": args.epochs, "patience": 0, "num_threads": 1}
    params = {"dataset": dataset, "features": features, "strategies": ["id", "gate", "dff"], "layers": ["all"],
              "seeds": [1, 2], "settings": settings}
    runs = expand_sweep({**params, "study": "bench-local"})
    print(f"sweep: {len(runs)} runs (id, gate, dff x seeds 1, 2), {args.epochs} epochs each, 1 thread per run")

    t = time.perf_counter()
    for r in runs:
        run_training(db, dataset, r["strategy"], features=r["features"], layers=r["layers"], settings=settings,
                     seed=r["seed"], study="bench-local")
    local_s = time.perf_counter() - t
    print(f"local engine (one after another): {local_s:.1f} s  (load {os.getloadavg()[0]:.2f})")

    from jobs.ray_sweep import run_sweep_ray

    t = time.perf_counter()
    first: list[float] = []
    out = run_sweep_ray(db, expand_sweep({**params, "study": "bench-ray"}), study="bench-ray", num_cpus=2,
                        log=lambda line: first.append(time.perf_counter() - t) if line.startswith("Ray:") else None)
    ray_s = time.perf_counter() - t
    start_s = first[0] if first else float("nan")
    print(f"local Ray, 2 workers: {ray_s:.1f} s, of which {start_s:.1f} s to start Ray and ship the data "
          f"(done {out['done']}, failed {out['failed']})  (load {os.getloadavg()[0]:.2f})")
    print(f"speed-up {local_s / ray_s:.2f}x overall, {local_s / max(ray_s - start_s, 1e-9):.2f}x after start-up")
    a = {(r.strategy, r.seed): r.result["test"]["NDCG@10"] for r in list_runs(db, study="bench-local")}
    b = {(r.strategy, r.seed): r.result["test"]["NDCG@10"] for r in list_runs(db, study="bench-ray")}
    print(f"max |test NDCG@10 local - Ray| over the 6 runs: {max(abs(a[k] - b[k]) for k in a):.2e}")
    estimate()


def estimate() -> None:
    """100 runs of a MicroLens-50k study on 8 GPUs: an estimate from assumptions, not a measurement."""
    runs, gpus = 100, 8
    epochs = 20              # the study default (--epochs 20, early stopping may end runs sooner)
    s_per_epoch_gpu = 1.5    # ASSUMED: full MicroLens-50k (50k users, 19,220 items, DFF over 31 x 576 layers)
    startup_s = 30.0         # ASSUMED: cluster connect + one read of split and features + shipping (~1.4 GB f16)
    per_run = epochs * s_per_epoch_gpu + 5.0  # + final validation/test and result transfer
    waves = -(-runs // gpus)
    total = startup_s + waves * per_run
    print(f"ESTIMATE (not measured here: no GPU): {runs} runs on {gpus} GPUs, one run per GPU -> {waves} waves x "
          f"{per_run:.0f} s per run + {startup_s:.0f} s start = {total / 60:.1f} min (vs {runs * per_run / 3600:.1f} h "
          f"on one GPU). Assumptions: {epochs} epochs per run, {s_per_epoch_gpu} s per epoch on one data-centre "
          f"GPU for full MicroLens-50k (2-core CPU here: 3.6-4.6 s per epoch on its 12,676-user, 3,000-item "
          f"subset, bench_train.py), runs independent and equally long.")


if __name__ == "__main__":
    main()
