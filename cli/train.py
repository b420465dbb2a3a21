"""``python -m dff_core train``: one SASRec run in the foreground; ``compare``: the Compare page's leaderboard."""
from __future__ import annotations

import argparse
import json
import sys

from cli.core import COMMANDS, EXTENSIONS, _db
from dff_core.metric_names import METRICS

from dff_core.endings import DEFAULT_EPOCHS, DEFAULT_PATIENCE


def add_train_options(p: argparse.ArgumentParser) -> None:
    from dff_core.models.strategies import STRATEGIES  # torch-free: building the parser loads no torch

    p.add_argument("--dataset", required=True)
    p.add_argument("--features", default=None, help="feature set name or id (every strategy but id needs one)")
    p.add_argument("--strategy", required=True, choices=STRATEGIES)
    p.add_argument("--layers", default="all", help="all | A-B | i,j,k (0 = embedding output)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help=f"epoch cap (default {DEFAULT_EPOCHS}); runs end by early stopping (--patience)")
    p.add_argument("--seed", type=int, default=42)
    add_fast_options(p)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--patience", type=int, default=DEFAULT_PATIENCE,
                   help="evaluations without improvement before stopping; 0 = train the whole cap")
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--layer-lr-mult", type=float, default=None,
                   help="dff: learning rate of the layer logits = lr x this (default: TrainConfig.layer_lr_mult)")
    p.add_argument("--layer-init", default=None, choices=("uniform", "probe"),
                   help="dff: start the layer weights uniform, or from the layers' usefulness scores (default: uniform)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the run (default: torch's)")
    p.add_argument("--study", default=None, help="group runs under a study name")


def add_fast_options(p: argparse.ArgumentParser) -> None:
    """Device, objective, batch size and learning rate (defaults: ``dff_core.train.defaults``)."""
    from dff_core.train.defaults import TRAIN_DEFAULTS as D
    from dff_core.train.defaults import scale_defaults_text
    from dff_core.train.defaults import AMP_CHOICES, BATCHINGS, FEATURE_BUFFERS, LOSSES, SAMPLERS  # torch-free

    p.add_argument("--device", default=D["device"], help="auto | cpu | cuda | cuda:N (auto: CUDA when available)")
    p.add_argument("--amp", default=D["amp"], choices=AMP_CHOICES,
                   help="bf16: autocast on CUDA; on a CPU with native bfloat16 (AVX512-BF16/AMX) the full softmax's "
                        "products and the feature buffer in bfloat16 (refused on other CPUs). auto (default): bf16 on "
                        "such a CPU, none elsewhere")
    p.add_argument("--feature-buffer", default=D["feature_buffer"], choices=FEATURE_BUFFERS,
                   help="DFF's layer stack: float (default: float32, or bfloat16 with amp bf16 on a CPU), int8 (a scale "
                        "per layer and dimension: half the bytes a step reads, a DFF epoch ~12 %% shorter; converged "
                        "test NDCG@10 ~1 %% lower on MicroLens-50k, see README)")
    p.add_argument("--loss", default=D["loss"], choices=LOSSES,
                   help="full softmax over all items; sampled softmax over the target + --negatives items; gbce: "
                        "gSASRec's calibrated binary cross-entropy over the same negatives (--gbce-t); logq: softmax over "
                        "--negatives items shared by the batch, logQ-corrected")
    p.add_argument("--negatives", type=int, default=D["negatives"], help="negatives per user and step (sampled, gbce), per batch (logq)")
    p.add_argument("--gbce-t", type=float, default=None, help="gbce calibration t in [0, 1] (default 0.75)")
    p.add_argument("--batching", default=D["batching"], choices=BATCHINGS,
                   help="length: users of similar length batched together (little padding); random: a plain shuffle")
    p.add_argument("--negative-sampler", default=D["negative_sampler"], choices=SAMPLERS,
                   help="uniform over the catalogue, or the batch's targets; the user's history is never a negative")
    p.add_argument("--batch-size", type=int, default=None, help=f"with --lr: {scale_defaults_text()}")
    p.add_argument("--lr", type=float, default=None, help="learning rate (see --batch-size for the default)")
    p.add_argument("--lr-decay", type=float, default=None,
                   help="multiply the learning rate by this after each evaluation without a better validation metric "
                        "(1: constant; see --batch-size for the default)")
    p.add_argument("--feature-lr-mult", type=float, default=None,
                   help="fusion strategies: learning rate of the content side (projection, gate, adapter) = lr x this "
                        "(see --batch-size for the default)")


def fast_settings(args: argparse.Namespace) -> dict:
    out = {"device": args.device, "amp": args.amp, "feature_buffer": args.feature_buffer, "loss": args.loss, "negatives": args.negatives,
           "negative_sampler": args.negative_sampler, "batching": args.batching, "batch_size": args.batch_size,
           "lr": args.lr, "lr_decay": args.lr_decay, "feature_lr_mult": args.feature_lr_mult}
    if getattr(args, "gbce_t", None) is not None:
        out["gbce_t"] = args.gbce_t
    return out


def train_settings(args: argparse.Namespace) -> dict:
    out = {"epochs": args.epochs, "hidden": args.hidden, "max_len": args.max_len, "patience": args.patience,
           "dropout": args.dropout, **fast_settings(args)}
    if getattr(args, "layer_lr_mult", None) is not None:  # unset: the TrainConfig default is stored with the run
        out["layer_lr_mult"] = args.layer_lr_mult
    if getattr(args, "layer_init", None) is not None:
        out["layer_init"] = args.layer_init
    if getattr(args, "threads", None) is not None:
        out["num_threads"] = args.threads
    return out


def _register(sub) -> None:
    p = sub.add_parser("train", help="train and evaluate one SASRec run")
    add_train_options(p)
    p.add_argument("--json", action="store_true", help="last stdout line: one JSON object with the results")

    c = sub.add_parser("compare", help="leaderboard of finished runs (mean ± std over seeds), as on Compare")
    c.add_argument("--dataset", action="append", default=None, help="keep this dataset (repeatable)")
    c.add_argument("--study", action="append", default=None, help="keep this study (repeatable)")
    c.add_argument("--strategy", action="append", default=None, help="keep this strategy (repeatable)")
    c.add_argument("--metric", default="NDCG@10", choices=list(METRICS))
    c.add_argument("--split", default="test", choices=["test", "val"])
    c.add_argument("--hide-capped", action="store_true",
                   help="leave out runs that hit the epoch cap while still improving (under-trained)")
    c.add_argument("--json", action="store_true", help="one JSON list of leaderboard rows")


def cmd_train(args: argparse.Namespace) -> int:
    from jobs.workflows import run_training
    from jobs.submit import check_train_params

    db = _db(args)
    # the same validator as submit / the Train page: a bad device or loss setting stops here, exit 2
    check_train_params(db, {"dataset": args.dataset, "strategy": args.strategy, "features": args.features,
                            "layers": args.layers, "settings": train_settings(args), "seed": args.seed})

    from contextlib import nullcontext

    from cli.progress import ProgressBar

    # a tqdm bar on stderr (cli/progress.py); --json keeps stderr to the log lines
    with (nullcontext() if args.json else ProgressBar(f"train {args.strategy}")) as bar:
        run = run_training(db, args.dataset, args.strategy, features=args.features, layers=args.layers,
                           settings=train_settings(args), seed=args.seed, study=args.study, progress=bar,
                           log=bar.log if bar else lambda line: print(line, file=sys.stderr))
    res = run.result or {}
    out = {"run_id": run.id, "strategy": run.strategy, "layers": run.layers, "epochs": run.epochs_run,
           "best_epoch": run.best_epoch, "ending": run.ending, "epoch_cap": args.epochs, "seconds": run.seconds,
           "seconds_per_epoch": run.seconds_per_epoch,
           "metrics": {"val": res.get("val"), "test": res.get("test")},
           "buckets": {"test": res.get("test_buckets")}, "status": run.status}
    if run.strategy == "dff":
        out["layer_weights"] = res.get("layer_weights")
    if args.json:
        print(json.dumps(out))
    else:
        t = res.get("test") or {}
        print(f"run {run.id} ({run.strategy}): test HR@10 {t.get('HR@10', float('nan')):.4f} "
              f"NDCG@10 {t.get('NDCG@10', float('nan')):.4f}  best epoch {run.best_epoch}/{run.epochs_run}, "
              f"{run.seconds:.1f} s, {(run.ending or '?').replace('_', ' ')}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from dff_core import compare
    from storage.views import runs_frame

    runs = runs_frame(_db(args))
    capped = int(compare.is_capped(runs).sum())
    shown = compare.filter_runs(runs, args.dataset, None, args.strategy, args.study, hide_capped=args.hide_capped)
    board = compare.leaderboard(shown, args.metric, args.split)
    if args.json:
        print(json.dumps(board.drop(columns=["mean", "std"]).assign(mean=board["mean"], std=board["std"])
                         .to_dict(orient="records"), default=str))
        return 0
    if board.empty:
        print("no finished runs match")
    else:  # the header names the metric and split the numbers are (the leaderboard's twin on Compare)
        print(f"{'strategy':8} {'features':20} {'layers':15} {'dataset':14} {args.split} {args.metric}, mean ± std "
              f"over seeds; training")
    for r in board.itertuples(index=False):
        print(f"{r.strategy:8} {r.features or '—':20} layers {r.layers:8} {r.dataset:14} {r.mean:.4f} ± {r.std:.4f} "
              f"(n={r.seeds})  {r.training}")
    if capped and not args.hide_capped:
        print(f"warning: {capped} runs hit their epoch cap while still improving (marked above); --hide-capped "
              "leaves them out", file=sys.stderr)
    return 0


EXTENSIONS.append(_register)
COMMANDS.update({"train": cmd_train, "compare": cmd_compare})
