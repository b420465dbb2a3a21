"""Storage benchmark: bulk feature write/read for 20,000 items x 31 layers x 576 dims, and lock waits
with two writers and a reader. Prints numbers; asserts nothing (targets live here, not in tests).

    .venv/bin/python bench/bench_storage.py [--items 20000 --layers 31 --dim 576]

Target: the whole tensor back in memory in under 2 s on the 2-core dev machine.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs.datasets import import_generic  # noqa: E402
from storage import Database  # noqa: E402
from storage.features import create_feature_set, read_features, write_vectors  # noqa: E402
from storage.runs import create_run  # noqa: E402


def synthetic_dataset(folder: Path, n_items: int) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(n_items // 2), 5)
    items = np.concatenate([rng.choice(n_items, 5, replace=False) for _ in range(n_items // 2)])
    items[: n_items] = np.arange(n_items)  # every item is used at least once
    pd.DataFrame({"user_id": users, "item_id": items}).to_csv(folder / "inter.csv", index=False)
    pd.DataFrame({"item_id": np.arange(n_items), "title": [f"t{i}" for i in range(n_items)]}).to_csv(
        folder / "items.csv", index=False)
    return folder / "inter.csv", folder / "items.csv"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--layers", type=int, default=31)
    ap.add_argument("--dim", type=int, default=576)
    ap.add_argument("--batch", type=int, default=2000, help="items per write (an extraction job's flush size)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dff_bench_"))
    db = Database(tmp / "bench.duckdb")
    ds = import_generic(db, "bench", *synthetic_dataset(tmp / "data", args.items))
    n = ds.stats["items"]
    x = np.random.default_rng(1).standard_normal((n, args.layers, args.dim), dtype=np.float32)
    results = {"items": n, "layers": args.layers, "dim": args.dim}
    for dtype in ("float16", "float32"):
        fs = create_feature_set(db, "bench", f"f_{dtype}", "bench", args.layers, args.dim, dtype=dtype)
        size_before = db.size_bytes()
        t = time.perf_counter()
        for s in range(0, n, args.batch):
            write_vectors(db, fs, np.arange(s, min(n, s + args.batch)), x[s:s + args.batch])
        results[f"{dtype}_write_s"] = round(time.perf_counter() - t, 2)
        with db.session() as conn:
            db.raw(conn).execute("CHECKPOINT")
        results[f"{dtype}_bytes_on_disk"] = db.size_bytes() - size_before
        reads = []
        for _ in range(3):
            t = time.perf_counter()
            out, present = read_features(db, fs, dtype=np.float16 if dtype == "float16" else np.float32)
            reads.append(time.perf_counter() - t)
        assert present.all() and out.shape == x.shape
        results[f"{dtype}_read_all_s"] = round(min(reads), 2)
        t = time.perf_counter()
        read_features(db, fs, layers=[args.layers // 2])
        results[f"{dtype}_read_one_layer_s"] = round(time.perf_counter() - t, 3)
        del out

    # lock contention: two writer processes and a reader, short transactions
    create_feature_set(db, "bench", "shared", "bench", 3, 16)
    runs = [create_run(db, ds.id, "id", {}).id for _ in range(2)]
    worker = ROOT / "tests" / "concurrency_worker.py"
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(worker), str(db.path), "writer", str(r), "200"],
                              stdout=subprocess.PIPE, text=True) for r in runs]
    procs.append(subprocess.Popen([sys.executable, str(worker), str(db.path), "reader", "0", "200"],
                                  stdout=subprocess.PIPE, text=True))
    reports = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    results["concurrent_wall_s"] = round(time.perf_counter() - t, 2)
    for r in reports:
        key = f"{r['role']}_{r['tag']}"
        results[f"{key}_mean_txn_ms"] = round(1000 * r["mean_wait"], 1)
        results[f"{key}_max_txn_ms"] = round(1000 * r["max_wait"], 1)
        results[f"{key}_errors"] = len(r["errors"])
    for k, v in results.items():
        print(f"{k:32} {v}")


if __name__ == "__main__":
    main()
