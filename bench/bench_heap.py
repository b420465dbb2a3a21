"""Training steps with glibc's allocator defaults vs inside ``dff_core.heap.keep_freed_memory``, interleaved in one
process: minor page faults and milliseconds a step (the full softmax, the defaults' batching, on a dataset already
in a database). Asserts nothing.

    python bench/bench_heap.py --db data/bench.duckdb --dataset ml50k --strategy dff --features smollm2-titles

Each round runs ``--steps`` steps (the next of one epoch's batches in order, wrapping) the default way, then the
same batches inside the block; the first ``--warmup`` steps of a fresh process are not counted.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from bench.bench_time_to_quality import load  # noqa: E402
from dff_core import cpu_kernels  # noqa: E402
from dff_core.heap import keep_freed_memory  # noqa: E402
from dff_core.train.batching import epoch_plan  # noqa: E402
from dff_core.train.losses import full_softmax_loss  # noqa: E402
from dff_core.train.trainer import TrainConfig, TrainingBatches, build_model, cpu_bf16  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--strategy", default="dff")
    ap.add_argument("--features", default=None)
    ap.add_argument("--layers", default="all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    split, feats = load(args.db, args.dataset, args.strategy, args.features, args.layers)
    cfg = TrainConfig(strategy=args.strategy)
    model = build_model(split.num_items, cfg, feats)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    batches = TrainingBatches.build(split, cfg.max_len)
    order, ends = epoch_plan(batches.lengths, cfg.batch_size, cfg.batching, torch.Generator().manual_seed(0))
    starts = [0] + ends[:-1].tolist()
    dtype = torch.bfloat16 if cpu_bf16(cfg, torch.device("cpu")) else torch.float32
    cpu_kernels.usable()

    def steps(first: int, n: int) -> tuple[float, float]:
        f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        for k in range(first, first + n):
            i = k % len(starts)
            idx = order[starts[i]:ends[i]]
            width = int(batches.lengths[idx].max())
            inp, tgt = batches.inputs[idx, -width:], batches.targets[idx, -width:]
            table = model.item_table()
            h = model(inp, table)
            sel = tgt > 0
            loss = full_softmax_loss(h[sel], tgt[sel], table, dtype)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return ((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n, (time.perf_counter() - t0) / n * 1e3)

    steps(0, args.warmup)
    print(f"{args.strategy}, {args.threads} threads, {args.steps} steps a round:")
    print(f"{'round':>5}  {'defaults: faults/step':>21}  {'ms/step':>7}  {'kept: faults/step':>17}  {'ms/step':>7}")
    for r in range(1, args.rounds + 1):
        first = args.warmup + (r - 1) * args.steps     # both ways run the same batches
        f_default, ms_default = steps(first, args.steps)
        with keep_freed_memory() as kept:
            f_kept, ms_kept = steps(first, args.steps)
        print(f"{r:>5}  {f_default:>21.0f}  {ms_default:>7.1f}  {f_kept:>17.0f}  {ms_kept:>7.1f}"
              + ("" if kept else "  (not glibc: nothing kept)"))


if __name__ == "__main__":
    main()
