"""``python -m dff_core runs | export-runs``: stored runs without a browser, and into MLflow.

    runs [--dataset D] [--study S] [--json]
    export-runs --mlflow DIR_OR_URI [--dataset D] [--study S]
"""
from __future__ import annotations

import argparse
import json

from cli.core import COMMANDS, EXTENSIONS, _db


def _register(sub) -> None:
    p = sub.add_parser("runs", help="list training runs (finished and running) with config and final metrics")
    p.add_argument("--dataset", default=None)
    p.add_argument("--study", default=None)
    p.add_argument("--json", action="store_true",
                   help="one JSON list: {run_id, status, dataset, features, strategy, layers, seed, study, engine, "
                        "metrics: {val, test}}")

    p = sub.add_parser("export-runs", help="write runs to an MLflow tracking store (re-export updates in place)")
    p.add_argument("--mlflow", required=True, metavar="DIR_OR_URI",
                   help="a folder (MLflow's SQLite store FOLDER/mlflow.db, artifacts in FOLDER/artifacts) or a "
                        "tracking URI (http://..., sqlite:///...)")
    p.add_argument("--dataset", default=None)
    p.add_argument("--study", default=None)
    p.add_argument("--experiment", default=None, help="MLflow experiment name (default dff-<dataset>)")


def ended(run: dict) -> str:
    """How a run ended, in words (``early stopped``, ``capped improving``, ...; ``—`` while it runs)."""
    return (run.get("ending") or "—").replace("_", " ")


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def cmd_runs(args: argparse.Namespace) -> int:
    from storage.views import layers_text, run_summaries

    rows = run_summaries(_db(args), dataset=args.dataset, study=args.study)
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    if not rows:
        print("no runs yet — train one: python -m dff_core train --dataset demo --strategy id")
        return 0
    print(f"{'run':>5} {'status':10} {'dataset':14} {'strategy':8} {'features':18} {'layers':8} {'seed':>5} "
          f"{'engine':6} {'val NDCG@10':>11} {'test NDCG@10':>12} {'test HR@10':>10} {'epochs':>6}  "
          f"{'ended':18} study")
    for r in rows:
        val, test = r["metrics"]["val"] or {}, r["metrics"]["test"] or {}
        layers = layers_text(r["layers"]) if r["strategy"] != "id" else "—"
        print(f"{r['run_id']:>5} {r['status']:10} {r['dataset'][:14]:14} {r['strategy']:8} {(r['features'] or '—')[:18]:18} "
              f"{layers[:8]:8} {r['seed'] if r['seed'] is not None else '—':>5} {r['engine']:6} "
              f"{_fmt(val.get('NDCG@10')):>11} {_fmt(test.get('NDCG@10')):>12} {_fmt(test.get('HR@10')):>10} "
              f"{r['epochs'] if r['epochs'] is not None else '—':>6}  {ended(r):18} {r['study'] or ''}")
    return 0


def cmd_export_runs(args: argparse.Namespace) -> int:
    from jobs.export_mlflow import export_runs

    out = export_runs(_db(args), args.mlflow, dataset=args.dataset, study=args.study, experiment=args.experiment)
    print(f"exported {out['runs']} runs to {out['tracking_uri']} ({out['created']} new, {out['updated']} updated)")
    if out["tracking_uri"].startswith("sqlite:"):
        print(f"open it: mlflow ui --backend-store-uri {out['tracking_uri']}")
    return 0


EXTENSIONS.append(_register)
COMMANDS.update({"runs": cmd_runs, "export-runs": cmd_export_runs})
