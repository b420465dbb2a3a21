"""``python -m dff_core study``: queue a study of the paper's three findings, or render its report.

    study --dataset D --features F [--captions C] [--seeds 3] [--layers auto] [--epochs 200] [--wait]
    study --report STUDY [--html out.html] [--csv verdicts.csv] [--runs-csv runs.csv]
    study --report NAME --from-runs-csv runs.csv --num-layers L [--cap E --patience P] [--html ...] [--csv ...]
    study-sample SOURCE NAME --users N [--seed 0] [--features F,G]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cli.core import COMMANDS, EXTENSIONS, _db
from dff_core.metric_names import METRICS
from jobs.errors import UsageError
from dff_core.endings import DEFAULT_EPOCHS, DEFAULT_PATIENCE  # = dff_core.study.plan.DEFAULT_SETTINGS; that
# package loads pandas and scipy, which building the parser must not (fast commands, --help)
from dff_core.train.defaults import AMP_CHOICES, BATCHINGS, FEATURE_BUFFERS, LOSSES, SAMPLERS


def _register(sub) -> None:
    p = sub.add_parser("study", help="check the paper's three findings on a dataset (queues one sweep), "
                                     "or render a study's report (--report)")
    p.add_argument("--dataset", help="dataset name")
    p.add_argument("--features", help="hidden-state feature set (all layers)")
    p.add_argument("--captions", default=None, help="caption-route feature set of the same backbone (optional)")
    p.add_argument("--seeds", default="3", help="a count (3 -> seeds 1,2,3) or a comma list (default 3)")
    p.add_argument("--layers", default="auto", help="single-layer points: auto (an even subset, see "
                                                   "--layer-points), A-B or i,j,k; the last layer is always added")
    p.add_argument("--layer-points", type=int, default=7, help="points of the even subset (default 7)")
    p.add_argument("--range", default="auto", dest="intermediate",
                   help="DFF intermediate range A-B (default: the middle half of the depth)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help=f"epoch cap (default {DEFAULT_EPOCHS}); runs end by early stopping")
    p.add_argument("--patience", type=int, default=DEFAULT_PATIENCE,
                   help="evaluations without improvement before a run stops")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-len", type=int, default=None)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads per training run (default: torch's)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--amp", default=None, choices=AMP_CHOICES,
                   help="auto (default): bf16 on a CPU with native bfloat16, none elsewhere; bf16 also autocasts on CUDA")
    p.add_argument("--feature-buffer", default=None, choices=FEATURE_BUFFERS,
                   help="DFF's layer stack: float (default) | int8 (half the bytes a step reads; see README)")
    p.add_argument("--loss", default=None, choices=LOSSES,
                   help="training objective (default: dff_core.train.defaults)")
    p.add_argument("--negatives", type=int, default=None)
    p.add_argument("--negative-sampler", default=None, choices=SAMPLERS)
    p.add_argument("--gbce-t", type=float, default=None, help="gbce calibration t in [0, 1]")
    p.add_argument("--batching", default=None, choices=BATCHINGS, help="length (default) | random")
    p.add_argument("--lr-decay", type=float, default=None,
                   help="learning-rate factor after each evaluation without improvement (default: by dataset size)")
    p.add_argument("--feature-lr-mult", type=float, default=None,
                   help="fusion runs' content-side learning rate = lr x this (default: by dataset size)")
    p.add_argument("--name", default=None, help="study name (default study-<dataset>-<features>)")
    p.add_argument("--dry-run", action="store_true", help="print the runs it would queue and stop")
    p.add_argument("--wait", action="store_true",
                   help="run a worker in the foreground until the queue is empty, then print the verdicts")
    p.add_argument("--report", metavar="STUDY", default=None, help="render the report of a stored study")
    p.add_argument("--html", metavar="FILE", default=None, help="with --report: write the HTML report here")
    p.add_argument("--csv", metavar="FILE", default=None, help="with --report: write the verdicts CSV here")
    p.add_argument("--runs-csv", metavar="FILE", default=None, help="with --report: write the per-run CSV here")
    p.add_argument("--metric", default="NDCG@10", choices=list(METRICS))
    p.add_argument("--note", default=None, help="with --report: a line on the compute, shown in the report")
    from cli.jobs import add_engine_options, add_side_by_side_option
    add_engine_options(p)
    add_side_by_side_option(p)
    p.add_argument("--from-runs-csv", metavar="FILE", default=None,
                   help="with --report NAME: re-judge a study from its exported runs CSV instead of the database")
    p.add_argument("--num-layers", type=int, default=None, help="with --from-runs-csv: stored layers of the features")
    p.add_argument("--cap", type=int, default=None,
                   help="with --from-runs-csv: the study's epoch cap (default: the most epochs any run ran)")
    p.add_argument("--weights-csv", metavar="FILE", default=None,
                   help="with --from-runs-csv: the report's DFF layer-weight table (role,layer,mean,std,seeds)")

    s = sub.add_parser("study-sample", help="store a seeded user subsample of a dataset with its feature sets")
    s.add_argument("source")
    s.add_argument("name")
    s.add_argument("--users", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--features", default="", help="comma list of feature sets to copy")


def print_verdicts(findings) -> None:
    for f in findings:
        print(f"finding {f.number}: {f.verdict.upper():13} {f.title}")
        for c in f.parts:
            print(f"  {c.part:3} {c.verdict:13} {c.claim}: {c.a} {c.mean_a:.4f}±{c.std_a:.4f} vs "
                  f"{c.b} {c.mean_b:.4f}±{c.std_b:.4f} (n={c.n}, p={c.p:.3g}) {c.reason}")


def cmd_study(args: argparse.Namespace) -> int:
    from dff_core.study.plan import StudyRequest, parse_layer_list, parse_range, plan_runs
    from jobs.study import queue_study

    if args.report and args.from_runs_csv:
        return _report_from_csv(args)
    db = _db(args)
    if args.report:
        return _report(db, args.report, args)
    if not args.dataset or not args.features:
        raise UsageError("say what to study: --dataset D --features F (or render one: --report STUDY)")
    from jobs.submit import engine_params, parse_seeds

    engine = engine_params(args.engine, args.address)
    req = StudyRequest(engine=engine.get("engine", "local"), address=engine.get("address"), dataset=args.dataset, features=args.features, captions=args.captions,
                       seeds=parse_seeds(args.seeds, number_is_count=True), layers=parse_layer_list(args.layers),
                       layer_points=args.layer_points, intermediate=parse_range(args.intermediate),
                       epochs=args.epochs, patience=args.patience, name=args.name,
                       extra_settings={k: v for k, v in (("batch_size", args.batch_size), ("max_len", args.max_len),
                                                         ("hidden", args.hidden),
                                                         ("num_threads", args.threads), ("lr", args.lr),
                                                         ("device", args.device), ("amp", args.amp),
                                                         ("feature_buffer", args.feature_buffer),
                                                         ("loss", args.loss), ("negatives", args.negatives),
                                                         ("negative_sampler", args.negative_sampler),
                                                         ("gbce_t", args.gbce_t), ("batching", args.batching),
                                                         ("lr_decay", args.lr_decay),
                                                         ("feature_lr_mult", args.feature_lr_mult))
                                       if v is not None})
    if args.dry_run:
        from storage.features import get_feature_set
        runs = plan_runs(req, get_feature_set(db, req.features, dataset=req.dataset).num_layers)
        for r in runs:
            print(f"{r['role']:12} {r['strategy']:8} {r['features'] or '—':24} layers {r['layers'] or '—'}")
        print(f"{len(runs)} runs x {len(req.seeds)} seeds = {len(runs) * len(req.seeds)} training runs")
        print(study_cost_line(db, req, runs, side_by_side=args.side_by_side))
        return 0
    from dff_core.endings import cap_warning
    from storage.views import epochs_needed

    warning = cap_warning(req.epochs, req.patience, epochs_needed(db, req.dataset))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    job_id = queue_study(db, req)
    print(f"queued study {req.study!r} (sweep job {job_id}); report: python -m dff_core study --report {req.study}")
    if args.wait:
        from jobs.worker import run_worker

        start = time.perf_counter()
        run_worker(db, once=True, train_slots_n=args.side_by_side)
        print(f"study {req.study!r}: queue empty after {(time.perf_counter() - start) / 60:.1f} min", file=sys.stderr)
        return _report(db, req.study, args)
    print(job_id)
    return 0


def study_cost_line(db, req, runs: list[dict], side_by_side: int | None = None) -> str:
    """The study's estimated compute (``jobs.estimates``), as the Study page shows it."""
    from dff_core.estimates import estimate_text
    from jobs.estimates import training_cost

    strategies = [r["strategy"] for r in runs for _ in req.seeds]
    return estimate_text(training_cost(db, req.dataset, strategies, {"epochs": req.epochs, **req.extra_settings},
                                       runs=[r for r in runs for _ in req.seeds], side_by_side=side_by_side))


def _report(db, study: str, args: argparse.Namespace) -> int:
    from dff_core.study.verdicts import evaluate
    from jobs.study import load_study

    data = load_study(db, study)
    findings = evaluate(data, args.metric)
    p = data.progress
    print(f"study {study!r}: {len(data.runs)} finished runs ({p.get('done', 0)}/{p.get('total', 0)} training jobs done"
          f"{', ' + str(p['failed']) + ' failed' if p.get('failed') else ''})")
    _write(data, findings, args)
    return 0


def _report_from_csv(args: argparse.Namespace) -> int:
    from dff_core.study.verdicts import evaluate, study_from_runs_csv

    if not args.num_layers:
        raise UsageError("--from-runs-csv needs --num-layers (the feature set's stored layers, e.g. 31)")
    if not Path(args.from_runs_csv).is_file():
        raise FileNotFoundError(f"runs CSV not found: {args.from_runs_csv}")
    data = study_from_runs_csv(args.from_runs_csv, args.num_layers, study=args.report, epochs=args.cap,
                               patience=args.patience, weights_csv=args.weights_csv, captions=args.captions)
    findings = evaluate(data, args.metric)
    print(f"study {data.study!r} (from {args.from_runs_csv}): {len(data.runs)} runs")
    _write(data, findings, args)
    return 0


def _write(data, findings, args: argparse.Namespace) -> None:
    from dff_core.study.report import capped_summary, render_html, runs_csv, verdicts_csv

    print_verdicts(findings)
    capped = capped_summary(data)
    if capped:
        print(f"warning: {capped}", file=sys.stderr)
    for path, text in ((args.html, lambda: render_html(data, args.metric, args.note, findings)),
                       (args.csv, lambda: verdicts_csv(findings)), (args.runs_csv, lambda: runs_csv(data))):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text(), encoding="utf-8")
            print(f"wrote {path}")


def cmd_study_sample(args: argparse.Namespace) -> int:
    from jobs.subsample import subsample_dataset

    start = time.perf_counter()
    out = subsample_dataset(_db(args), args.source, args.name, args.users, args.seed,
                            [f.strip() for f in args.features.split(",") if f.strip()],
                            log=lambda line: print(line, file=sys.stderr))
    print(f"stored {out['dataset']!r}: {out['users']} users, {out['items']} items, {out['interactions']} "
          f"interactions, feature sets {out['feature_sets']} ({time.perf_counter() - start:.1f} s)")
    return 0


EXTENSIONS.append(_register)
COMMANDS.update({"study": cmd_study, "study-sample": cmd_study_sample})
