"""``python -m dff_core jobs|submit|cancel|retry|resume|worker``: the background queue from a terminal."""
from __future__ import annotations

import argparse
import json

from cli.core import COMMANDS, EXTENSIONS, _db


def _register(sub) -> None:
    from cli.train import add_train_options

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
    from cli.train import add_fast_options
    add_fast_options(s)
    add_engine_options(s)
    e = kinds.add_parser("extract", help="feature extraction")
    from cli.extract import add_extract_options
    add_extract_options(e)

    p = sub.add_parser("cancel", help="cancel a queued or running job, or a whole study/sweep (--group)")
    p.add_argument("job_id", type=int, nargs="?", default=None)
    p.add_argument("--group", "--study", dest="group", default=None,
                   help="cancel every queued, running or interrupted job of this study, sweep or group at once")
    for name, text in (("retry", "run a failed/cancelled job again"), ("resume", "continue an interrupted job")):
        p = sub.add_parser(name, help=text)
        p.add_argument("job_id", type=int)

    p = sub.add_parser("worker", help="run a job worker in the foreground")
    p.add_argument("--concurrency", type=int, default=1)
    add_side_by_side_option(p)
    p.add_argument("--once", action="store_true", help="exit when the queue is empty")


def add_side_by_side_option(p: argparse.ArgumentParser) -> None:
    """``--side-by-side N``: training runs a worker runs at once (``jobs.worker``)."""
    p.add_argument("--side-by-side", type=int, default=None, metavar="N",
                   help="training runs at once, each on its share of the cores (default DFF_TRAIN_SIDE_BY_SIDE "
                        "or 2: on 2 CPU cores two runs side by side train ~1.4x the epochs an hour; 1: one at a time)")


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """``--engine local|ray [--address ray://HEAD:10001]`` for sweeps and studies."""
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: one train job per run on this machine's worker; ray: every run a Ray task, "
                        "this job the driver (pip install -r requirements-ray.txt)")
    p.add_argument("--address", default=None,
                   help="with --engine ray: a running cluster (ray://HEAD:10001); default a local instance")


def cmd_jobs(args: argparse.Namespace) -> int:
    from storage.queue import list_jobs

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
    """Every kind goes through ``jobs.submit``: the same checks as the pages and study plans."""
    from jobs import submit

    db = _db(args)
    if args.kind == "train":
        from cli.train import train_settings

        job_id = submit.enqueue_train(db, args.dataset, args.strategy, args.features, args.layers,
                                      train_settings(args), args.seed, study=args.study)
    elif args.kind == "sweep":
        from cli.train import fast_settings

        settings = {"epochs": args.epochs, "patience": args.patience, **fast_settings(args)}
        if args.threads:
            settings["num_threads"] = args.threads
        job_id = submit.enqueue_sweep(db, args.dataset, args.features,
                                      [s.strip() for s in args.strategies.split(",") if s.strip()],
                                      submit.parse_layer_choices(args.layers), submit.parse_seeds(args.seeds),
                                      args.study, settings, engine=args.engine, address=args.address)
    else:
        from cli.extract import extract_request

        job_id = submit.enqueue_extract(db, **extract_request(args))
    print(f"queued {args.kind} job")
    print(job_id)
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    from storage import queue

    db = _db(args)
    if args.command == "cancel" and (args.job_id is None) == (args.group is None):
        from jobs.errors import UsageError
        raise UsageError("cancel takes a job id or --group NAME (a study or sweep), one of the two")
    if args.command == "cancel" and args.group is not None:
        counts = queue.cancel_group(db, args.group)
        print(f"group {args.group!r}: {counts['cancelled']} job(s) cancelled, {counts['stopping']} running job(s) "
              "asked to stop")
    elif args.command == "cancel":
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

    run_worker(_db(args), concurrency=max(1, args.concurrency), once=args.once, train_slots_n=args.side_by_side)
    return 0


EXTENSIONS.append(_register)
COMMANDS.update({"jobs": cmd_jobs, "submit": cmd_submit, "cancel": cmd_control, "retry": cmd_control,
                 "resume": cmd_control, "worker": cmd_worker})
