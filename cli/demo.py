"""``python -m dff_core demo-study``: Home's *Run the demo study* without a browser (``--plan``: what it would
queue and how long it would take, queueing nothing). The demo dataset alone is ``python -m dff_core demo``."""
from __future__ import annotations

import argparse
import json

from cli.core import COMMANDS, EXTENSIONS, _db


def _register(sub) -> None:
    p = sub.add_parser("demo-study", help="queue the demo study (demo data, demo features, every strategy × 2 seeds)")
    p.add_argument("--plan", action="store_true", help="print the plan and its estimated time; queue nothing")
    p.add_argument("--json", action="store_true", help="one JSON object: plan, notes, estimate, queued job ids")


def _seconds(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def cmd_demo_study(args: argparse.Namespace) -> int:
    from jobs import submit
    from jobs.demo_estimate import demo_study_estimate

    db = _db(args)
    plan, notes = submit.demo_study_plan(db)
    est = demo_study_estimate(db, plan, submit.backbone_families()[0])
    queued = [] if args.plan else submit.enqueue_demo_study(db)
    if args.json:
        print(json.dumps({"plan": [{"kind": k, "params": p} for k, p in plan], "notes": notes,
                          "estimate": est.to_dict(), "queued": queued}, default=str))
        return 0
    for note in notes:
        print(f"note: {note}")
    if not plan:
        print("the demo study is stored or queued: nothing to do")
        return 0
    print(f"{'step':40} {'low':>9} {'high':>9}  basis")
    for s in est.steps:
        print(f"{s.what:40} {_seconds(s.low):>9} {_seconds(s.high):>9}  {'measured here' if s.measured else 'default'}")
    print(f"{'total':40} {_seconds(est.low):>9} {_seconds(est.high):>9}")
    print(("queued jobs " + ", ".join(f"#{i}" for i in queued)) if queued else "nothing queued (--plan)")
    return 0


EXTENSIONS.append(_register)
COMMANDS.update({"demo-study": cmd_demo_study})
