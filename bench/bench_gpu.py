"""Time to quality where users train: one GPU, the whole MicroLens-50k read straight from its folder (no
database), SmolLM2 title features of every item extracted on that GPU, then ID-only and DFF SASRec under full
and sampled softmax, and RecBole's SASRec on the same leave-one-out split, all trained to early stopping side
by side on the one GPU.

    python bench/bench_gpu.py --microlens ../shared/data/microlens --device cuda --out OUT \\
        [--gguf PATH] [--runs 'id:full/256/1e-3;dff:sampled-uniform-256/1024/3e-3'] [--cap-min 6] [--recbole]

Contract: prints, and writes to ``OUT/results.jsonl`` one JSON line per run: the extraction (items/s, seconds),
then for each run the wall time to its best validation NDCG@10 (training and validation of every epoch up to
the best, as in ``bench_time_to_quality.py``), the test NDCG@10 of that best model, the validation curve, and
whether it early-stopped or was capped (a capped run is a bound, not a converged result). Per-run logs go to
``OUT/<run>.log`` as they happen, so a run cut short still leaves its curve. Asserts nothing.

Why side by side: a GPU is far from busy with one small SASRec (hidden 64), so a sweep runs several at once;
the wall times below are measured that way, each run sharing the GPU with the others (say so when quoting
them). Runs are ``STRATEGY:LOSS/BATCH/LR`` with LOSS as in ``bench_time_to_quality.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_RUNS = ("id:full/256/1e-3;id:full/1024/3e-3;id:sampled-uniform-256/1024/3e-3;"
                "dff:full/256/1e-3;dff:full/1024/3e-3;dff:sampled-uniform-256/1024/3e-3")


def load_split(folder: str, top_items: int | None):
    """MicroLens folder -> (SplitData, titles in item-index order), through the importer's own preparation."""
    from dff_core.data.importers import Preprocessing, prepare, read_microlens
    from dff_core.data.split import leave_one_out

    prepared = prepare(read_microlens(folder), Preprocessing(top_items=top_items))
    inter = prepared.interactions.sort_values(["user_idx", "pos"], kind="stable")
    bounds = np.flatnonzero(np.diff(inter["user_idx"].to_numpy())) + 1
    seqs = np.split(inter["item_idx"].to_numpy(np.int64), bounds)
    split = leave_one_out(seqs, len(prepared.items), [str(u) for u in prepared.users["user_id"]])
    return split, prepared.items["title"].fillna("").astype(str).tolist()


def extract_titles(titles: list[str], spec: str, device: str, batch_size: int) -> tuple[np.ndarray, dict]:
    """Every title through the frozen backbone, all layers pooled: ``[items, layers, dim]`` float16."""
    from dff_core.backbones import load_backbone
    from dff_core.extraction.runner import ExtractItem, extract

    t0 = time.perf_counter()
    model = load_backbone(spec, device=device)  # the family's compute dtype for the device (bfloat16 on CUDA)
    load_s = time.perf_counter() - t0
    out: dict[int, np.ndarray] = {}

    def keep(idx, feats):
        for i, row in zip(idx, feats):
            out[i] = row.astype(np.float16)

    items = [ExtractItem(idx=i, item_id=str(i), title=t) for i, t in enumerate(titles)]
    summary = extract(model, items, inputs=("title",), batch_size=batch_size, on_batch=keep)
    feats = np.stack([out[i] for i in range(len(titles))])
    return feats, {"kind": "extract", "backbone": spec, "device": device, "items": len(titles),
                   "compute_dtype": str(getattr(model, "dtype", "")), "batch_size": batch_size,
                   "failed": summary.failed, "load_s": load_s, "seconds": summary.seconds,
                   "items_per_s": len(titles) / max(summary.seconds, 1e-9), "shape": list(feats.shape)}


def child(args) -> None:
    """One training run (``--child RUN``): prints its result as one JSON line."""
    from bench_time_to_quality import parse_config, run_one

    strategy, config = args.child.split(":", 1)
    with open(Path(args.work) / "split.pkl", "rb") as fh:
        split = pickle.load(fh)
    feats = None if strategy == "id" else np.load(Path(args.work) / "features.npy").astype(np.float32)
    settings = {"strategy": strategy, "epochs": args.epochs, "patience": args.patience, "seed": args.seed,
                "num_threads": 2, "device": args.device, **parse_config(config)}
    log_path = Path(args.out) / (args.child.replace(":", "_").replace("/", "_") + ".log")
    with open(log_path, "w") as fh:
        def log(line: str) -> None:
            fh.write(line + "\n")
            fh.flush()

        row = run_one(split, feats, args.child, settings, 60 * args.cap_min, log)
    print(json.dumps({"kind": "run", **row, "device": args.device}))


def recbole_cmd(args, split, work: Path) -> list[str]:
    """RecBole's atomic file of ``split`` under ``work`` and the command that trains on it."""
    from recbole_runner import write_atomic

    write_atomic(split, work, "ml")
    return [sys.executable, str(BENCH / "recbole_runner.py"), str(work), "ml", str(args.epochs), str(args.patience),
            str(args.seed), args.device, str(60 * args.cap_min)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--microlens", default=str(BENCH.parent.parent / "shared" / "data" / "microlens"))
    ap.add_argument("--top-items", type=int, default=None, help="a smaller catalogue (a quick check)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--gguf", default=None, help="SmolLM2 GGUF file (default: the bundled one)")
    ap.add_argument("--extract-batch", type=int, default=64)
    ap.add_argument("--runs", default=DEFAULT_RUNS)
    ap.add_argument("--recbole", action="store_true", help="also RecBole's SASRec on the same split")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cap-min", type=float, default=6.0)
    ap.add_argument("--budget-s", type=float, default=None,
                    help="whole-command budget: runs are capped so that they end (and test) inside it")
    ap.add_argument("--out", default="bench/out/gpu")
    ap.add_argument("--work", default=None, help="scratch folder (default OUT/work)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    from dff_core.train.device import resolve_device

    args.device = resolve_device(args.device)
    out = Path(args.out)
    work = Path(args.work or out / "work")
    work.mkdir(parents=True, exist_ok=True)
    results = open(out / "results.jsonl", "a")

    def record(row: dict) -> None:
        results.write(json.dumps(row) + "\n")
        results.flush()
        print(json.dumps(row), flush=True)

    t0 = time.perf_counter()
    split, titles = load_split(args.microlens, args.top_items)
    import torch
    from dff_core.eval.evaluate import popularity_baseline

    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    record({"kind": "data", "users": split.num_users, "items": split.num_items, "load_s": time.perf_counter() - t0,
            "device": args.device, "gpu": gpu, "torch": torch.__version__, "cpus": os.cpu_count(),
            "train_interactions": int(sum(len(t) for t in split.train)),
            "popularity_test_ndcg10": popularity_baseline(split, "test").metrics["NDCG@10"]})
    with open(work / "split.pkl", "wb") as fh:
        pickle.dump(split, fh)

    runs = [r.strip() for r in args.runs.split(";") if r.strip()]
    procs: dict[str, subprocess.Popen] = {}
    if any(not r.startswith("id:") for r in runs):  # the features first, alone on the GPU: a clean items/s
        spec = "smollm2" + (f":{args.gguf}" if args.gguf else "")
        try:
            feats, info = extract_titles(titles, spec, args.device, args.extract_batch)
        except Exception as exc:  # the ID-only runs and RecBole still tell something
            record({"kind": "failed", "run": "extract", "error": f"{type(exc).__name__}: {exc}"[:2000]})
            runs = [r for r in runs if r.startswith("id:")]
        else:
            np.save(work / "features.npy", feats)
            record(info)
            del feats
    if args.budget_s:  # leave ~45 s for the last epoch past the cap, the test of the best model and the report
        args.cap_min = min(args.cap_min, (args.budget_s - (time.perf_counter() - t0) - 45) / 60)
    base = [sys.executable, __file__, "--device", args.device, "--out", str(out), "--work", str(work),
            "--epochs", str(args.epochs), "--patience", str(args.patience), "--seed", str(args.seed),
            "--cap-min", str(args.cap_min)]
    if args.recbole:
        procs["recbole"] = subprocess.Popen(recbole_cmd(args, split, work), cwd=work, stdout=subprocess.PIPE,
                                            stderr=open(out / "recbole.log", "w"), text=True)
    record({"kind": "launch", "runs": runs + (["recbole"] if args.recbole else []),
            "side_by_side": len(procs) + len(runs), "cap_min": args.cap_min})
    for run in runs:
        procs[run] = subprocess.Popen(base + ["--child", run], stdout=subprocess.PIPE,
                                      stderr=open(out / (run.replace(":", "_").replace("/", "_") + ".err"), "w"),
                                      text=True)
    for name, proc in procs.items():
        stdout, _ = proc.communicate()
        lines = [ln for ln in (stdout or "").splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            record({"kind": "failed", "run": name, "returncode": proc.returncode})
            continue
        row = json.loads(lines[-1])
        if name == "recbole":
            row = {"kind": "recbole", **row, "test_ndcg10": row["test"]["ndcg@10"], "val_ndcg10": row["val"]["ndcg@10"]}
        record(row)


if __name__ == "__main__":
    main()
