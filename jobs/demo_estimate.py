"""The demo study's estimated time, from ``jobs.submit.demo_study_plan``'s steps and what this database measured.

Reads the inputs (the demo's item count, each backbone's measured items/s, earlier demo builds and demo runs)
from storage and hands them to the maths in ``dff_core.demo.estimate``; Home and ``python -m dff_core
demo-study --plan`` show the same numbers.
"""
from __future__ import annotations

import numpy as np

from dff_core.demo.estimate import StudyEstimate, build_step, extraction_step, training_step
from dff_core.estimates import extraction_estimate
from dff_core.load_estimate import load_seconds
from storage import Database
from storage import views
from storage.datasets import get_dataset

DEMO_ITEMS = 300  # dff_core.demo.build.build_demo's n_items: the catalogue size before the dataset exists


def plan_runs(plan: list[tuple[str, dict]]) -> int:
    """Training runs the plan's sweep creates (its runs × its seeds)."""
    return sum(len(p.get("runs") or [None]) * len(p.get("seeds") or [None]) for kind, p in plan if kind == "sweep")


def demo_study_estimate(db: Database, plan: list[tuple[str, dict]], families: list[dict]) -> StudyEstimate:
    """Low/high seconds of every queued step of ``plan`` (``families``: the backbone registry, for layer counts)."""
    from jobs.datasets import DEMO_NAME

    by_family = {f["family"]: f for f in families}
    est = StudyEstimate()
    builds = views.job_seconds(db, "demo")
    items = DEMO_ITEMS
    if views.demo_dataset_exists(db, DEMO_NAME):
        items = int(views.dataset_summary(get_dataset(db, DEMO_NAME))["items"] or DEMO_ITEMS)
    for kind, p in plan:
        if kind == "demo":
            est.steps.append(build_step(float(np.median(builds)) if builds else None))
        elif kind == "extract":
            fam = by_family.get(p["backbone"], {})
            rate = views.family_throughput(db, p["backbone"])
            layers = fam.get("num_layers") or fam.get("layers") or 1
            dim = fam.get("dim") or fam.get("hidden_size") or 1
            e = extraction_estimate(items, int(layers), int(dim), p["backbone"],
                                    p["inputs"], int(p.get("num_frames") or 1), measured_items_per_s=rate)
            est.steps.append(extraction_step(p["name"], e["seconds"], load_seconds(p["backbone"]), e["measured"]))
    runs = plan_runs(plan)
    if runs:
        seconds = views.run_seconds(db, DEMO_NAME)
        spread = (float(np.percentile(seconds, 25)), float(np.percentile(seconds, 75))) if len(seconds) >= 3 else None
        est.steps.append(training_step(runs, spread))
    return est
