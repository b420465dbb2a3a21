"""A study against storage: queue one (every run checked first), list the queued ones, and read one back with
its roles, DFF layer weights and job progress for the verdicts (``dff_core.study``) to judge."""
from __future__ import annotations

import pandas as pd

from dff_core.study.plan import StudyRequest, sweep_params
from dff_core.study.verdicts import StudyData, assign_roles
from jobs.handlers import expand_sweep
from jobs.submit import check_run_count, check_seed_count, check_train_params, check_train_settings
from storage import Database
from storage.datasets import get_dataset
from storage.db import NotFound
from storage.features import get_feature_set
from storage.names import check_name
from storage.queue import ACTIVE, enqueue, list_jobs
from storage.runs import list_runs
from storage.views import layer_weights_frame, runs_frame


def list_studies(db: Database) -> list[str]:
    """Names of the studies queued through study mode, newest first."""
    names = [j.group_name for j in sorted(list_jobs(db), key=lambda j: -j.id)
             if j.kind == "sweep" and ((j.params or {}).get("plan") or {}).get("kind") == "study"]
    return list(dict.fromkeys(n for n in names if n))


def queue_study(db: Database, request: StudyRequest) -> int:
    """Check everything a worker would trip over, then queue the study's sweep; returns the job id."""
    ds = get_dataset(db, request.dataset)
    check_train_settings(request.settings())
    fs = get_feature_set(db, request.features, dataset=ds.id)
    if fs.kind == "caption":
        raise ValueError(f"feature set {fs.name!r} is a caption embedding; give hidden states as --features and "
                         "the caption set as --captions")
    if request.captions:
        cap = get_feature_set(db, request.captions, dataset=ds.id)
        check_train_params(db, {"dataset": ds.name, "strategy": "caption", "features": cap.name, "layers": "all"})
    params = sweep_params(request, fs.num_layers)
    params["study"] = check_name("study", params["study"])
    check_seed_count(len(params.get("seeds") or []))
    check_run_count(len(expand_sweep(params)), f"study {params['study']!r}")
    for run in params["runs"]:
        check_train_params(db, {"dataset": ds.name, "settings": request.settings(), **run})
    study = params["study"]
    if list_runs(db, study=study) or any(j.status in ACTIVE for j in list_jobs(db, group=study)):
        raise ValueError(f"study {study!r} already has runs or queued jobs; pick another --name, or render it "
                         f"with: python -m dff_core study --report {study}")
    return enqueue(db, "sweep", params, group=study)


def load_study(db: Database, study: str) -> StudyData:
    """Finished runs of ``study`` (from ``storage``), with roles, DFF layer weights and job progress."""
    runs = runs_frame(db, status="done", study=study)
    jobs = [j for j in list_jobs(db, group=study)]
    if runs.empty and not jobs:
        raise NotFound(f"no study named {study!r}: no runs or jobs are stored under that name")
    sweep = next((j for j in jobs if j.kind == "sweep"), None)
    p = (sweep.params if sweep else {}) or {}
    plan = p.get("plan") or {}
    dataset = p.get("dataset") or (runs["dataset"].iloc[0] if len(runs) else "")
    hidden = runs[~runs["strategy"].isin(["id", "caption"])]
    features = p.get("features") or (hidden["features"].mode().iloc[0] if len(hidden) else "")
    num_layers = plan.get("num_layers")
    if num_layers is None and features:
        try:
            num_layers = get_feature_set(db, features, dataset=dataset).num_layers
        except NotFound:
            num_layers = None
    runs = assign_roles(runs, num_layers)
    weights = layer_weights_frame(db, runs)
    if len(weights):
        info = runs.set_index("run_id")[["role", "seed"]]
        weights = weights.join(info, on="run_id")[["run_id", "role", "seed", "layer", "weight"]]
    else:
        weights = pd.DataFrame(columns=["run_id", "role", "seed", "layer", "weight"])
    train_jobs = [j for j in jobs if j.kind == "train"]
    progress = {status: sum(j.status == status for j in train_jobs)
                for status in ("queued", "running", "done", "failed", "cancelled", "interrupted")}
    progress["total"] = len(train_jobs)
    if p.get("engine") == "ray":  # no train jobs: the runs are Ray tasks, counted from their run records
        records = [r for r in list_runs(db, study=study) if r.job_id == sweep.id]
        progress = {status: sum(r.status == status for r in records)
                    for status in ("running", "done", "failed", "cancelled", "interrupted")}
        progress["total"] = len(expand_sweep(p))
        progress["queued"] = max(0, progress["total"] - len(records))
    progress["sweep"] = sweep.status if sweep else None
    return StudyData(study=study, runs=runs, num_layers=num_layers, dataset=str(dataset), features=str(features),
                     captions=plan.get("captions"), weights=weights, progress=progress)
