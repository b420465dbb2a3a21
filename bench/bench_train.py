"""Training benchmark: every strategy's test HR@10 / NDCG@10 (mean ± std over seeds), seconds per epoch,
DFF layer weights and the popularity baseline, on a dataset already in a database.

    # once: import + extract (see README), e.g. on the real MicroLens-50k bundle
    python -m dff_core --db data/bench.duckdb import-dataset ml50k --microlens ../shared/data/microlens
    python -m dff_core --db data/bench.duckdb extract --dataset ml50k --backbone smollm2 --name smollm2 --inputs title
    # then
    python bench/bench_train.py --db data/bench.duckdb --dataset ml50k --features smollm2 --seeds 1,2,3

Prints a table; asserts nothing. Runs are stored like any other (study ``bench``), so the dashboard's
Compare page shows them too.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dff_core.eval.evaluate import popularity_baseline  # noqa: E402
from jobs.workflows import run_training  # noqa: E402
from storage import Database  # noqa: E402
from storage.datasets import get_dataset  # noqa: E402
from jobs.reads import load_split


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--features", default=None)
    ap.add_argument("--strategies", default="id,replace,init,add,concat,gate,dff")
    ap.add_argument("--layers", default="all", help="layers for single-layer strategies use the mean of these")
    ap.add_argument("--dff-layers", default="all")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--study", default="bench")
    args = ap.parse_args()
    db = Database(args.db)
    ds = get_dataset(db, args.dataset)
    split = load_split(db, ds.id)
    pop = popularity_baseline(split, "test").metrics
    rows = []
    for strategy in args.strategies.split(","):
        results = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            layers = args.dff_layers if strategy == "dff" else args.layers
            t = time.perf_counter()
            run = run_training(db, ds.id, strategy, features=args.features if strategy != "id" else None,
                               layers=layers if strategy != "id" else None, seed=seed, study=args.study,
                               settings={"epochs": args.epochs, "patience": args.patience, "hidden": args.hidden})
            results.append((run, time.perf_counter() - t))
            print(f"  {strategy} seed {seed}: test NDCG@10 {run.result['test']['NDCG@10']:.4f} "
                  f"({run.epochs_run} epochs, {run.seconds_per_epoch:.1f} s/epoch)", flush=True)
        hr = np.array([r.result["test"]["HR@10"] for r, _ in results])
        nd = np.array([r.result["test"]["NDCG@10"] for r, _ in results])
        spe = np.array([r.seconds_per_epoch for r, _ in results])
        rows.append((strategy, hr, nd, spe, results[-1][0].result.get("layer_weights")))
    print(f"\n{'strategy':10} {'HR@10':>17} {'NDCG@10':>17} {'s/epoch':>8}")
    print(f"{'popularity':10} {pop['HR@10']:>17.4f} {pop['NDCG@10']:>17.4f} {'-':>8}")
    for strategy, hr, nd, spe, _ in rows:
        print(f"{strategy:10} {hr.mean():>9.4f} ± {hr.std():.4f} {nd.mean():>9.4f} ± {nd.std():.4f} {spe.mean():>8.1f}")
    for strategy, *_, weights in rows:
        if weights:
            top = sorted(weights.items(), key=lambda kv: -kv[1])[:5]
            print(f"{strategy} layer weights (top 5): " + ", ".join(f"L{k}={v:.3f}" for k, v in top))


if __name__ == "__main__":
    main()
