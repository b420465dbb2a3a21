"""Training judged by time to quality: wall time to the best validation NDCG@10, and test NDCG@10 at that point,
for full softmax vs sampled softmax (uniform / in-batch negatives), batch size and learning rate, side by side in
one run on a dataset already in a database. Evaluation is always full ranking over all items.

    python bench/bench_time_to_quality.py --db data/bench.duckdb --dataset ml50k \\
        --configs 'full/256/1e-3;sampled-uniform-256/256/1e-3;sampled-uniform-256/1024/3e-3;sampled-in-batch-256/256/1e-3' \\
        --cap-min 'full/256/1e-3=20' --default-cap-min 8
    # DFF (needs a feature set of that dataset):
    python bench/bench_time_to_quality.py --db data/bench.duckdb --dataset ml50k-top3k --strategy dff \\
        --features smollm2-title --configs 'full/256/1e-3;sampled-uniform-256/256/1e-3'
    # several single-thread runs side by side vs the same runs one after another with 2 threads:
    python bench/bench_time_to_quality.py --db data/bench.duckdb --dataset ml50k --parallel 2 --parallel-epochs 2 \\
        --configs 'sampled-uniform-256/256/1e-3'

A config is ``LOSS/BATCH/LR``, LOSS = ``full`` | ``sampled-uniform-N`` | ``sampled-in-batch-N``. The time to
the best validation epoch counts training and validation of every epoch up to it (setup, the final test
evaluation and the patience epochs after the best one are not counted; "total" includes the patience epochs).
Process CPU time (all threads) to the best epoch is
printed beside wall time: on a shared machine it is the fairer yardstick. A run longer than its cap (minutes) is stopped there and reported as "capped": its numbers are a bound, its
best epoch the best seen so far. Each finished run appends one JSON line to ``--out``. Asserts nothing.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# before torch loads: spinning OpenMP threads are very slow on a shared, busy machine (see README, extraction)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dff_core.eval.evaluate import evaluate, popularity_baseline  # noqa: E402
from dff_core.train.trainer import CHECKPOINT_NAME, TrainConfig, load_checkpoint, train  # noqa: E402


def parse_config(text: str) -> dict:
    """``LOSS/BATCH/LR[/OPTION...]`` -> TrainConfig settings, e.g. ``gbce-256/1024/3e-3/length/bf16/t=0.75``.

    LOSS: ``full`` | ``sampled-uniform-N`` | ``sampled-in-batch-N`` | ``gbce-N`` | ``logq-N`` (N shared negatives). Options: ``length`` / ``random``
    (batching, default random), ``bf16`` / ``fp32`` (amp, default fp32), ``t=X`` (gBCE calibration), ``decay=X``
    (``lr_decay``: the learning rate's factor after each evaluation without improvement), ``int8`` / ``float``
    (DFF's feature buffer, default float)."""
    loss, batch, lr, *options = text.strip().split("/")
    out = {"batch_size": int(batch), "lr": float(lr), "batching": "random", "amp": "none", "feature_buffer": "float"}
    for opt in options:
        if opt in ("length", "random"):
            out["batching"] = opt
        elif opt in ("bf16", "fp32"):
            out["amp"] = "bf16" if opt == "bf16" else "none"
        elif opt in ("int8", "float"):
            out["feature_buffer"] = opt
        elif opt.startswith("t="):
            out["gbce_t"] = float(opt[2:])
        elif opt.startswith("decay="):
            out["lr_decay"] = float(opt[len("decay="):])
        else:
            raise SystemExit(f"unknown option {opt!r} in config {text!r}: length | random | bf16 | fp32 | t=X | "
                             "decay=X | int8 | float")
    if loss == "full":
        return {**out, "loss": "full"}
    if loss.startswith("gbce-"):
        return {**out, "loss": "gbce", "negatives": int(loss[len("gbce-"):])}
    if loss.startswith("logq-"):
        return {**out, "loss": "logq", "negatives": int(loss[len("logq-"):])}
    for sampler in ("uniform", "in-batch"):
        prefix = f"sampled-{sampler}-"
        if loss.startswith(prefix):
            return {**out, "loss": "sampled", "negative_sampler": sampler, "negatives": int(loss[len(prefix):])}
    raise SystemExit(f"cannot read config {text!r}: LOSS/BATCH/LR[/OPTION...] with LOSS full | "
                     "sampled-uniform-N | sampled-in-batch-N | gbce-N | logq-N")


def load(db_path: str, dataset: str, strategy: str, features: str | None, layers: str):
    from dff_core.layers import parse_layers
    from jobs.reads import load_training_features
    from storage import Database
    from storage.datasets import get_dataset
    from jobs.reads import load_split
    from storage.features import get_feature_set

    db = Database(db_path)
    ds = get_dataset(db, dataset)
    split = load_split(db, ds.id)
    feats = None
    if strategy != "id":
        fs = get_feature_set(db, features, dataset=ds.id)
        feats, _, _ = load_training_features(db, ds.id, fs, parse_layers(layers, fs.num_layers))
    return split, feats


def run_one(split, feats, name: str, settings: dict, cap_s: float, log) -> dict:
    cfg = TrainConfig(eval_every=1, log_every=10_000, **settings)
    start, cpu0 = time.perf_counter(), time.process_time()
    stop = lambda: time.perf_counter() - start > cap_s  # noqa: E731
    cpu_at = {}  # epoch -> process CPU seconds (all threads) since the start, at the end of its validation

    def on_event(ev):
        if ev["type"] == "epoch":
            cpu_at[ev["epoch"]] = time.process_time() - cpu0
            log(f"  {name} epoch {ev['epoch']}: loss {ev['loss']:.4f} val NDCG@10 {ev['val']['NDCG@10']:.4f} "
                f"{ev['seconds']:.1f} s (elapsed {time.perf_counter() - start:.0f} s)")

    with tempfile.TemporaryDirectory() as tmp:
        res = train(split, cfg, feats, checkpoint_dir=tmp, callback=on_event, should_stop=stop)
        test = res.test
        if res.cancelled:  # capped: test the best state seen so far, from the checkpoint
            saved = load_checkpoint(Path(tmp) / CHECKPOINT_NAME)
            if saved["state"]["best_state"] is not None:
                res.model.load_state_dict(saved["state"]["best_state"])
            test = evaluate(res.model, split, "test", cfg.eval_batch_size, cfg.cold_threshold).metrics
    hist = res.history
    to_best = sum(r["seconds"] for r in hist if r["epoch"] <= res.best_epoch)
    best_val = next((r["val"]["NDCG@10"] for r in hist if r["epoch"] == res.best_epoch), float("nan"))
    return {"config": name, **settings, "epochs": res.epochs_run, "best_epoch": res.best_epoch,
            "s_per_epoch": sum(r["seconds"] for r in hist) / max(1, len(hist)),
            "train_s_per_epoch": sum(r["train_seconds"] for r in hist) / max(1, len(hist)),
            "to_best_s": to_best, "to_best_cpu_s": cpu_at.get(res.best_epoch, float("nan")),
            "total_cpu_s": max(cpu_at.values(), default=float("nan")), "total_s": sum(r["seconds"] for r in hist), "val_ndcg10": best_val,
            "test_ndcg10": test["NDCG@10"], "test_hr10": test["HR@10"], "capped": res.cancelled,
            "stopped_early": res.stopped_early, "val_curve": [round(r["val"]["NDCG@10"], 5) for r in hist],
            "history": [{"train_seconds": r["train_seconds"], "seconds": r["seconds"]} for r in hist]}


def print_table(rows: list[dict], pop: float, baseline: str) -> None:
    base = next((r for r in rows if r["config"] == baseline), rows[0])
    print(f"\n{'config':34} {'ep':>3} {'best':>4} {'s/ep':>6} {'to best':>8} {'CPU to best':>11} {'val N@10':>9} "
          f"{'test N@10':>9} {'speed-up':>8} {'CPU s-up':>8} {'test Δ':>7}  status")
    print(f"{'popularity':34} {'':>3} {'':>4} {'':>6} {'':>8} {'':>11} {'':>9} {pop:>9.4f}")
    for r in rows:
        sp = base["to_best_s"] / r["to_best_s"] if r["to_best_s"] else float("nan")
        cpu_sp = base["to_best_cpu_s"] / r["to_best_cpu_s"] if r["to_best_cpu_s"] else float("nan")
        rel = r["test_ndcg10"] / base["test_ndcg10"] - 1 if base["test_ndcg10"] else float("nan")
        status = "capped (bound)" if r["capped"] else ("early-stopped" if r["stopped_early"] else "epoch limit")
        print(f"{r['config'] + ' s' + str(r['seed']):34} {r['epochs']:>3} {r['best_epoch']:>4} {r['s_per_epoch']:>6.1f} "
              f"{r['to_best_s'] / 60:>6.1f}m {r['to_best_cpu_s'] / 60:>9.1f}m {r['val_ndcg10']:>9.4f} "
              f"{r['test_ndcg10']:>9.4f} {sp:>7.2f}x {cpu_sp:>7.2f}x {100 * rel:>+6.1f}%  {status}")
    print(f"speed-up (wall / process CPU time to the best validation epoch) and test Δ are relative to "
          f"{base['config']}. On a shared machine compare the CPU columns.")


def parallel(args, settings: dict) -> None:
    """N single-thread runs at once (as a sweep with N workers would) vs the same N runs one after another
    with 2 threads each; fixed epochs, no early stopping: throughput only."""
    n = args.parallel
    base = [sys.executable, __file__, "--db", args.db, "--dataset", args.dataset, "--strategy", args.strategy,
            "--configs", args.configs.split(";")[0], "--epochs", str(args.parallel_epochs), "--patience", "0",
            "--single"]
    if args.features:
        base += ["--features", args.features, "--layers", args.layers]
    t = time.perf_counter()
    procs = [subprocess.Popen(base + ["--threads", "1", "--seed", str(s + 1)], stdout=subprocess.PIPE, text=True)
             for s in range(n)]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    side = time.perf_counter() - t
    t = time.perf_counter()
    seq = [json.loads(subprocess.run(base + ["--threads", "2", "--seed", str(s + 1)], stdout=subprocess.PIPE,
                                     text=True, check=True).stdout.strip().splitlines()[-1]) for s in range(n)]
    one = time.perf_counter() - t
    ep = n * args.parallel_epochs
    print(f"\n{n} runs x {args.parallel_epochs} epochs of {args.configs.split(';')[0]}:")
    print(f"  {n} single-thread runs side by side: {side:.0f} s wall ({60 * ep / side:.2f} epochs/min), "
          f"s/epoch each {[round(o['s_per_epoch'], 1) for o in outs]}")
    print(f"  one 2-thread run at a time:        {one:.0f} s wall ({60 * ep / one:.2f} epochs/min), "
          f"s/epoch each {[round(o['s_per_epoch'], 1) for o in seq]}")
    print(f"  side by side / one at a time throughput: {one / side:.2f}x")


def product_rates(items: int, hidden: int, threads: int) -> dict[str, float]:
    """GFLOP/s this machine sustains on the full softmax's three products (one 256-row block of the logits, its two
    gradients), float32 and bfloat16: the yardstick of an epoch's floor."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, dt in (("none", torch.float32), ("bf16", torch.bfloat16)):
        h, w, z = torch.randn(256, hidden).to(dt), torch.randn(items, hidden).to(dt), torch.randn(256, items).to(dt)
        ops = [lambda: h @ w.T, lambda: z @ w, lambda: z.T @ h]
        for op in ops:
            op()
        t = time.perf_counter()
        for _ in range(5):
            for op in ops:
                op()
        out[name] = 5 * 3 * 2 * 256 * items * hidden / (time.perf_counter() - t) / 1e9
    return out


def epoch_costs(args, split, feats, configs: list[str]) -> None:
    """``--epoch-costs N``: N epochs of each config (no early stopping), and with ``--before DIR`` the same loss /
    batch / lr in an older checkout's code; prints training and validation seconds per epoch against the floor."""
    import numpy as np

    targets = sum(max(0, min(len(t) - 1, 50)) for t in split.train)
    rates = product_rates(split.num_items, 64, args.threads)
    flops = 3 * 2 * targets * split.num_items * 64
    print(f"floor of a full-softmax epoch: 3 products x {targets:,} targets x {split.num_items:,} items x 64 = "
          f"{flops / 1e12:.2f} TFLOP; this machine, {args.threads} threads: {rates['none']:.0f} GFLOP/s float32 -> "
          f"{flops / rates['none'] / 1e9:.1f} s, {rates['bf16']:.0f} GFLOP/s bfloat16 -> {flops / rates['bf16'] / 1e9:.1f} s "
          f"(plus {targets * split.num_items / 1e9:.1f} G exponentials)", flush=True)
    rows = []
    if args.before:
        # an older checkout may read only LOSS/BATCH/LR (random batches, float32): --before-config says otherwise
        loss_batch_lr = args.before_config or "/".join(configs[0].split("/")[:3])
        cmd = [sys.executable, str(Path(args.before) / "bench" / "bench_time_to_quality.py"), "--db",
               str(Path(args.before_db or args.db).resolve()), "--dataset", args.dataset, "--strategy", args.strategy, "--configs",
               loss_batch_lr, "--epochs", str(args.epoch_costs), "--patience", "0", "--threads", str(args.threads),
               "--single"] + (["--features", args.features, "--layers", args.layers] if args.features else [])
        env = dict(os.environ, PYTHONPATH=str(Path(args.before).resolve()))
        out = json.loads(subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, cwd=args.before,
                                        env=env).stdout.strip().splitlines()[-1])
        rows.append((f"before: {loss_batch_lr}" + ("" if args.before_config else " (random batches)"), out["train_s_per_epoch"],
                     out["s_per_epoch"] - out["train_s_per_epoch"]))
    for name in configs:
        settings = {"strategy": args.strategy, "epochs": args.epoch_costs, "patience": 0,
                    "num_threads": args.threads, "seed": args.seed, **parse_config(name)}
        r = run_one(split, feats, name, settings, 1e9, lambda line: None)
        hist = [x for x in r.pop("history")]
        rows.append((name, float(np.median([x["train_seconds"] for x in hist])),
                     float(np.median([x["seconds"] - x["train_seconds"] for x in hist]))))
    print(f"\n{args.strategy}, {args.threads} threads, median of {args.epoch_costs} epochs:")
    print(f"{'config':44} {'train s':>8} {'val s':>6} {'x floor':>8}")
    for name, tr, val in rows:
        amp = "bf16" if "/bf16" in name else "none"
        print(f"{name:44} {tr:>8.1f} {val:>6.1f} {tr / (flops / rates[amp] / 1e9):>7.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--strategy", default="id")
    ap.add_argument("--features", default=None)
    ap.add_argument("--layers", default="all")
    ap.add_argument("--configs", default="full/256/1e-3;sampled-uniform-256/256/1e-3;sampled-uniform-256/1024/3e-3;"
                                          "sampled-in-batch-256/256/1e-3")
    ap.add_argument("--baseline", default="full/256/1e-3", help="the config speed-ups are measured against")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", default=None, help="comma-separated seeds: every config once per seed (overrides --seed)")
    ap.add_argument("--default-cap-min", type=float, default=30.0)
    ap.add_argument("--cap-min", default="", help="per-config caps: 'CONFIG=MIN;CONFIG=MIN'")
    ap.add_argument("--out", default="tmp/bench_time_to_quality.jsonl")
    ap.add_argument("--parallel", type=int, default=0, help="only the side-by-side throughput check, N runs")
    ap.add_argument("--parallel-epochs", type=int, default=2)
    ap.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # one run, JSON on stdout
    ap.add_argument("--epoch-costs", type=int, default=0, metavar="N",
                    help="only the cost of N epochs per config (training and validation seconds vs the floor)")
    ap.add_argument("--before", default=None, metavar="DIR",
                    help="with --epoch-costs: also run the first config's loss/batch/lr in an older checkout at DIR "
                         "(e.g. git worktree add DIR COMMIT)")
    ap.add_argument("--before-config", default=None, metavar="CONFIG",
                    help="the config the --before checkout runs (default: the first config's LOSS/BATCH/LR)")
    ap.add_argument("--before-db", default=None, metavar="FILE",
                    help="the database the older code reads (one it wrote itself: a newer schema is refused)")
    args = ap.parse_args()
    caps = dict(c.split("=") for c in args.cap_min.split(";") if c.strip())
    configs = [c.strip() for c in args.configs.split(";") if c.strip()]
    if args.parallel:
        return parallel(args, parse_config(configs[0]))
    split, feats = load(args.db, args.dataset, args.strategy, args.features, args.layers)
    log = (lambda line: None) if args.single else (lambda line: print(line, flush=True))
    common = {"strategy": args.strategy, "epochs": args.epochs, "patience": args.patience,
              "num_threads": args.threads, "seed": args.seed}
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    if args.epoch_costs:
        return epoch_costs(args, split, feats, configs)
    if args.single:
        print(json.dumps(run_one(split, feats, configs[0], {**common, **parse_config(configs[0])}, 1e9, log)))
        return
    pop = popularity_baseline(split, "test").metrics["NDCG@10"]
    print(f"{args.dataset}: {len(split.train)} users, {split.num_items} items; strategy {args.strategy}; "
          f"{args.threads} threads; patience {args.patience}; popularity test NDCG@10 {pop:.4f}", flush=True)
    rows = []
    for name, seed in [(c, sd) for c in configs for sd in seeds]:
        cap = 60 * float(caps.get(name, args.default_cap_min))
        row = run_one(split, feats, name, {**common, **parse_config(name), "seed": seed}, cap, log)
        row.update(dataset=args.dataset, cap_s=cap, threads=args.threads)
        rows.append(row)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print_table(rows, pop, args.baseline)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
