"""``python -m dff_core versus``: the Compare page's leaderboard with its paired test against a baseline row and
the winner, without a browser.

    versus [--baseline N] [--dataset D] [--study S] [--strategy X] [--metric M] [--split test|val]
           [--hide-capped] [--json]

``N`` is a row number as printed (1 = best mean); the default baseline is the ID-only row, as on Compare.
"""
from __future__ import annotations

import argparse
import json
import math

from cli.core import COMMANDS, EXTENSIONS, _db
from jobs.errors import UsageError


def _register(sub) -> None:
    from dff_core.metric_names import METRICS

    p = sub.add_parser("versus", help="leaderboard with a paired test of every row against a baseline row, and "
                                      "the winner (Compare's 'which is better?')")
    p.add_argument("--baseline", type=int, default=None, metavar="N",
                   help="row number as printed (1 = best); default: the ID-only row, else the last row")
    p.add_argument("--dataset", action="append", default=None, help="keep this dataset (repeatable)")
    p.add_argument("--study", action="append", default=None, help="keep this study (repeatable)")
    p.add_argument("--strategy", action="append", default=None, help="keep this strategy (repeatable)")
    p.add_argument("--metric", default="NDCG@10", choices=list(METRICS))
    p.add_argument("--split", default="test", choices=["test", "val"])
    p.add_argument("--hide-capped", action="store_true", help="leave out runs capped while still improving")
    p.add_argument("--json", action="store_true", help="one JSON object: rows (with their test) and winner")


def _num(value: float, digits: int = 4) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.{digits}f}"


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def cmd_versus(args: argparse.Namespace) -> int:
    from dff_core import compare
    from storage.views import runs_frame

    runs = compare.filter_runs(runs_frame(_db(args)), args.dataset, None, args.strategy, args.study,
                               hide_capped=args.hide_capped)
    board = compare.leaderboard(runs, args.metric, args.split)
    if len(board) < 2:
        raise UsageError(f"{len(board)} leaderboard row(s) match; a comparison needs at least two")
    if args.baseline is not None and not 1 <= args.baseline <= len(board):
        raise UsageError(f"--baseline must be a row number from 1 to {len(board)}")
    baseline = args.baseline - 1 if args.baseline is not None else compare.default_baseline(board)
    tests = compare.versus_baseline(runs, board, baseline, args.metric, args.split)
    best = compare.winner(board, tests)
    rows = [{"row": i + 1, "label": compare.row_label(r), "mean": r["mean"], "std": r["std"], "seeds": int(r["seeds"]),
             "training": r["training"], **{k: (None if isinstance(v, float) and math.isnan(v) else v)
                                           for k, v in tests.loc[i].items()}}
            for i, r in board.iterrows()]
    if args.json:
        print(json.dumps({"metric": f"{args.split} {args.metric}", "baseline": baseline + 1, "rows": rows,
                          "winner": {**best, "row": best["row"] + 1}}, default=str))
        return 0
    metric = f"{args.split} {args.metric}"
    print(f"{'row':>3}  {'strategy · features · layers · dataset':44} {metric + ' (mean ± std)':>26} {'seeds':>5}  "
          f"{'vs baseline':22} {'Δ':>8} {'p':>7}")
    for r in rows:
        mark = "★ " if r["row"] - 1 == best["row"] and best["beats_baseline"] else ""
        print(f"{r['row']:>3}  {r['label'][:44]:44} {compare.mean_std_text(r['mean'], r['std'], r['seeds']):>26} "
              f"{r['seeds']:>5}  {(mark + r['verdict'])[:22]:22} {_num(r['Δ vs baseline']):>8} "
              f"{_p(r['p']):>7}")
    base = rows[baseline]["label"]
    if best["baseline_is_best"]:
        print(f"the baseline {base} has the best mean; next: {best['label']}: {best['reason']}")
    elif best["beats_baseline"]:
        print(f"winner: {best['reason']}")
    else:
        print(f"best mean: {best['label']}, but not better than {base}: {best['verdict']} ({best['reason']})")
    return 0


EXTENSIONS.append(_register)
COMMANDS.update({"versus": cmd_versus})
