"""Our ID-only SASRec against RecBole's SASRec: same data, same split, same sizes, measured in one run.

    python bench/bench_recbole.py [--microlens ../shared/data/microlens] [--users 10000] [--epochs 30]

RecBole goes into its own virtualenv (``.venv-recbole``, created on first use with ``pip install recbole``),
because it pins an older numpy; it never enters the project's environment. Both models: 2 blocks, 1 head,
hidden 64, feed-forward 64, dropout 0.2, max length 50, batch 256, Adam(W) lr 1e-3, softmax CE over all
items, early stopping on validation NDCG@10, full ranking with already-seen items excluded, leave-one-out
(RecBole's ``LS: valid_and_test`` with ``order: TO``). Both are limited to 2 torch threads.

One difference is structural and printed: RecBole trains on every prefix of every training sequence as its
own sample (one target per sample), we train every position of a user's sequence at once (SASRec's original
objective), so an "epoch" is a different amount of work — compare time to the best model too.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from jobs.datasets import import_microlens  # noqa: E402
from dff_core.data.split import SplitData  # noqa: E402
from dff_core.train.trainer import TrainConfig, train  # noqa: E402
from storage import Database  # noqa: E402
from jobs.reads import load_split  # noqa: E402
from recbole_runner import write_atomic  # noqa: E402

RB_VENV = ROOT / ".venv-recbole"


def recbole_python() -> Path:
    py = RB_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(RB_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0", "numpy<2", "recbole==1.2.1"],
                       check=True)
    return py


def subsample(split: SplitData, users: int | None, seed: int) -> SplitData:
    """A random subset of users, items re-indexed to those that occur (RecBole only knows those)."""
    keep = np.arange(split.num_users)
    if users and users < split.num_users:
        keep = np.sort(np.random.default_rng(seed).choice(split.num_users, users, replace=False))
    seqs = [np.append(split.train[u], [split.val_target[u], split.test_target[u]]) for u in keep]
    used = np.unique(np.concatenate(seqs))
    remap = np.full(split.num_items, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    seqs = [remap[s] for s in seqs]
    return SplitData(num_items=len(used), user_ids=[split.user_ids[u] for u in keep],
                     train=[s[:-2] for s in seqs], val_target=np.array([s[-2] for s in seqs]),
                     test_target=np.array([s[-1] for s in seqs]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--microlens", default=str(ROOT.parent / "shared" / "data" / "microlens"))
    ap.add_argument("--users", type=int, default=None, help="random subset of users (default: all)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        db = Database(tmp / "bench.duckdb")
        ds = import_microlens(db, "ml", args.microlens)
        split = subsample(load_split(db, ds.id), args.users, args.seed)
        print(f"data: {split.num_users} users, {split.num_items} items, "
              f"{sum(len(t) for t in split.train)} training interactions", flush=True)

        cfg = TrainConfig(strategy="id", epochs=args.epochs, patience=args.patience, seed=args.seed,
                          num_threads=2, log_every=10 ** 9)
        t0 = time.perf_counter()
        ours = train(split, cfg)
        ours_wall = time.perf_counter() - t0

        write_atomic(split, tmp, "ml")
        py = recbole_python()
        t0 = time.perf_counter()
        proc = subprocess.run([str(py), str(ROOT / "bench" / "recbole_runner.py"), str(tmp), "ml", str(args.epochs),
                               str(args.patience), str(args.seed)], capture_output=True, text=True, cwd=tmp,
                              env={**os.environ, "PYTHONPATH": ""})
        rb_wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            raise SystemExit("RecBole failed")
        rb = json.loads(proc.stdout.strip().splitlines()[-1])

    rb_test = {"HR@10": rb["test"]["hit@10"], "NDCG@10": rb["test"]["ndcg@10"],
               "HR@20": rb["test"]["hit@20"], "NDCG@20": rb["test"]["ndcg@20"]}
    rb_epoch = float(np.mean(rb["epoch_seconds"]))
    print(f"\n{'':10} {'HR@10':>7} {'NDCG@10':>8} {'HR@20':>7} {'NDCG@20':>8} {'s/epoch':>8} {'epochs':>6} "
          f"{'best':>5} {'wall s':>7} {'samples/epoch':>13}")
    print(f"{'ours':10} {ours.test['HR@10']:7.4f} {ours.test['NDCG@10']:8.4f} {ours.test['HR@20']:7.4f} "
          f"{ours.test['NDCG@20']:8.4f} {ours.seconds_per_epoch:8.2f} {ours.epochs_run:6d} {ours.best_epoch:5d} "
          f"{ours_wall:7.1f} {split.num_users:13d}")
    print(f"{'RecBole':10} {rb_test['HR@10']:7.4f} {rb_test['NDCG@10']:8.4f} {rb_test['HR@20']:7.4f} "
          f"{rb_test['NDCG@20']:8.4f} {rb_epoch:8.2f} {rb['epochs']:6d} {'':>5} {rb_wall:7.1f} "
          f"{rb['train_samples']:13d}")
    print(f"\nNDCG@10 ours/RecBole: {ours.test['NDCG@10'] / max(rb_test['NDCG@10'], 1e-12):.3f}; "
          f"s/epoch ours/RecBole: {ours.seconds_per_epoch / rb_epoch:.3f}; "
          f"RecBole users/items seen: {rb['users']}/{rb['items']}")


if __name__ == "__main__":
    main()
