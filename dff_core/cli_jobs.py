"""``python -m dff_core jobs|submit|cancel|retry|resume|worker``: the background queue from a terminal."""
from __future__ import annotations

import argparse
import json

from dff_core.cli import COMMANDS, EXTENSIONS, UsageError, _db


def _register(sub) -> None:
    from dff_core.cli_train import add_train_options

    p = sub.add_parser("jobs", help="list jobs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--status", default=None)
    p.add_argument("--limit", type=int, default=50)

    p = sub.add_parser("submit", help="queue a job for the background worker (prints the job id last)")
    kinds = p.add_subparsers(dest="kind", required=True)
    t = kinds.add_parser("train", help="one training run")
    add_train_options(t)
    s = kinds.add_parser("sweep", help="strategies x layers x seeds as one study")
    s.add_argument("--dataset", required=True)
    s.add_argument("--features", default=None)
    s.add_argument("--strategies", required=True, help="comma list, e.g. id,replace,gate,dff")
    s.add_argument("--layers", default="all", help="semicolon list of layer choices, e.g. 'all;8-20;30'")
    s.add_argument("--seeds", default="42", help="comma list, e.g. 1,2,3")
    s.add_argument("--study", required=True)
    from dff_core.endings import DEFAULT_EPOCHS, DEFAULT_PATIENCE
    s.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epoch cap; runs end by early stopping")
    s.add_argument("--patience", type=int, default=DEFAULT_PATIENCE)
    s.add_argument("--threads", type=int, default=None, help="torch threads per training run (default: torch's)")
    from dff_core.cli_train import add_fast_options
    add_fast_options(s)
    add_engine_options(s)
    e = kinds.add_parser("extract", help="feature extraction")
    from dff_core.cli_extract import add_extract_options
    add_extract_options(e)

    for name, text in (("cancel", "cancel a queued or running job"), ("retry", "run a failed/cancelled job again"),
                       ("resume", "continue an interrupted job")):
        p = sub.add_parser(name, help=text)
        p.add_argument("job_id", type=int)

    p = sub.add_parser("worker", help="run a job worker in the foreground")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--once", action="store_true", help="exit when the queue is empty")


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """``--engine local|ray [--address ray://HEAD:10001]`` for sweeps and studies."""
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: one train job per run on this machine's worker; ray: every run a Ray task, "
                        "this job the driver (pip install -r requirements-ray.txt)")
    p.add_argument("--address", default=None,
                   help="with --engine ray: a running cluster (ray://HEAD:10001); default a local instance")


def engine_params(args: argparse.Namespace) -> dict:
    """The sweep-job parameters for the engine options ({} for the local engine), checked."""
    if args.address and args.engine != "ray":
        raise UsageError("--address names a Ray cluster; add --engine ray")
    if args.engine != "ray":
        return {}
    return {"engine": "ray", "address": args.address or None}


def cmd_jobs(args: argparse.Namespace) -> int:
    from jobs.queue import list_jobs

    jobs = list_jobs(_db(args), status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps([{k: v for k, v in j.to_dict().items() if k != "log"} for j in jobs], default=str))
        return 0
    if not jobs:
        print("no jobs")
    for j in jobs:
        print(f"{j.id:>5} {j.kind:8} {j.status:12} {100 * j.progress:5.1f}%  {j.step or ''}"
              + (f"  error: {j.error}" if j.error else ""))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from jobs.queue import enqueue

    db = _db(args)
    if args.kind == "train":
        from dff_core.cli_train import train_settings
        from jobs.submit import check_train_settings
        params = {"dataset": args.dataset, "strategy": args.strategy, "features": args.features,
                  "layers": args.layers, "seed": args.seed, "settings": train_settings(args), "study": args.study}
        check_train_settings(params["settings"])
        _check_train_params(db, params)
        job_id = enqueue(db, "train", params, group=args.study)
    elif args.kind == "sweep":
        from dff_core.cli_train import fast_settings
        from dff_core.models.item_encoders import STRATEGIES
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        bad = [s for s in strategies if s not in STRATEGIES]
        if bad or not strategies:
            raise UsageError(f"unknown strategies {bad}; choose from {', '.join(STRATEGIES)}")
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise UsageError(f"--seeds must be a comma list of integers, not {args.seeds!r}") from None
        params = {"dataset": args.dataset, "features": args.features, "strategies": strategies,
                  "layers": [l.strip() for l in args.layers.split(";") if l.strip()], "seeds": seeds,
                  "study": args.study, "settings": {"epochs": args.epochs, "patience": args.patience,
                                                    **fast_settings(args)},
                  **engine_params(args)}
        if args.threads:
            params["settings"]["num_threads"] = args.threads
        from jobs.submit import check_train_settings
        check_train_settings(params["settings"])
        for layers in params["layers"]:
            _check_train_params(db, {"dataset": args.dataset, "features": args.features,
                                     "strategy": next((s for s in strategies if s != "id"), "id"), "layers": layers})
        job_id = enqueue(db, "sweep", params, group=args.study)
    else:
        from dff_core.cli_extract import extract_params
        job_id = enqueue(db, "extract", extract_params(db, args))
    print(f"queued {args.kind} job")
    print(job_id)
    return 0


def _check_train_params(db, params: dict) -> None:
    """Refuse at submit time what would fail in the worker: unknown dataset/feature set, bad layers."""
    from dff_core.models.item_encoders import FEATURE_STRATEGIES
    from dff_core.workflows import parse_layers
    from storage.datasets import get_dataset
    from storage.features import get_feature_set

    ds = get_dataset(db, params["dataset"])
    if params["strategy"] in FEATURE_STRATEGIES and not params.get("features"):
        raise UsageError(f"strategy {params['strategy']!r} needs --features")
    if params.get("features"):
        fs = get_feature_set(db, params["features"], dataset=ds.id if not str(params["features"]).isdigit() else None)
        parse_layers(params.get("layers"), fs.num_layers)


def cmd_control(args: argparse.Namespace) -> int:
    from jobs import queue

    db = _db(args)
    if args.command == "cancel":
        print(f"job {args.job_id}: {queue.request_cancel(db, args.job_id)}")
    elif args.command == "retry":
        queue.retry(db, args.job_id)
        print(f"job {args.job_id} queued again")
    else:
        queue.resume(db, args.job_id)
        print(f"job {args.job_id} queued to resume")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from jobs.worker import run_worker

    run_worker(_db(args), concurrency=max(1, args.concurrency), once=args.once)
    return 0


EXTENSIONS.append(_register)
COMMANDS.update({"jobs": cmd_jobs, "submit": cmd_submit, "cancel": cmd_control, "retry": cmd_control,
                 "resume": cmd_control, "worker": cmd_worker})
