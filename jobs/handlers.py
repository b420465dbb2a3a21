"""What each job kind does. A handler gets the database, the job and a ``JobContext`` (progress, log,
cancel flag) and calls the same ``jobs.workflows`` functions the CLI runs in the foreground."""
from __future__ import annotations

import itertools

from jobs.context import JobContext
from storage import Database, queue


def handle_train(db: Database, job: queue.Job, ctx: JobContext) -> None:
    from jobs.workflows import run_training

    p = job.params
    run_id = (job.result or {}).get("run_id")  # set when an earlier attempt got as far as creating the run
    if run_id:
        ctx.log(f"resuming run {run_id} from its last checkpoint")
    run = run_training(db, p["dataset"], p["strategy"], features=p.get("features"), layers=p.get("layers"),
                       settings=p.get("settings"), seed=int(p.get("seed", 42)), study=p.get("study") or job.group_name,
                       job_id=job.id, run_id=run_id,
                       progress=lambda f, s: ctx.progress(f, s),
                       log=ctx.log, should_stop=ctx.should_stop,
                       on_run=lambda rid: ctx.progress(0.0, "training", force=True, result_update={"run_id": rid}),
                       owner=ctx.owner)
    t = (run.result or {}).get("test") or {}
    if run.status == "done":
        ctx.log(f"run {run.id} done: test NDCG@10 {t.get('NDCG@10', 0):.4f}, HR@10 {t.get('HR@10', 0):.4f}")


def expand_sweep(params: dict) -> list[dict]:
    """strategies x layer choices x seeds -> one train-job parameter set each (``id`` ignores layers).

    ``runs`` (a list of ``{strategy, features, layers}``), when given, replaces the cross product: each
    choice runs once per seed, seed by seed, so a study stopped half-way still has whole seeds to pair."""
    if params.get("runs"):
        return [{"dataset": params["dataset"], "strategy": r["strategy"],
                 "features": r.get("features") if r["strategy"] != "id" else None,
                 "layers": r.get("layers") if r["strategy"] != "id" else None, "seed": int(seed),
                 "settings": params.get("settings") or {}, "study": params["study"]}
                for seed in params.get("seeds") or [42] for r in params["runs"]]
    strategies = params["strategies"]
    layer_choices = params.get("layers") or ["all"]
    seeds = params.get("seeds") or [42]
    out, seen = [], set()
    for strategy, layers, seed in itertools.product(strategies, layer_choices, seeds):
        if strategy == "id":
            layers = None
        key = (strategy, str(layers), seed)
        if key in seen:
            continue
        seen.add(key)
        out.append({"dataset": params["dataset"], "strategy": strategy,
                    "features": params.get("features") if strategy != "id" else None,
                    "layers": layers, "seed": int(seed), "settings": params.get("settings") or {},
                    "study": params["study"]})
    return out


def handle_sweep(db: Database, job: queue.Job, ctx: JobContext) -> None:
    """Expand into train jobs grouped under the study name; they queue behind this one.

    ``engine: ray`` instead runs every training run as a Ray task with this job as the driver
    (``jobs.ray_sweep``): progress, cancel and resume stay on this one job."""
    if job.params.get("engine") == "ray":
        return handle_sweep_ray(db, job, ctx)
    children = (job.result or {}).get("children")
    if children:
        ctx.log(f"sweep already expanded into jobs {children}")
        return
    ctx.progress(0.0, "expanding", force=True)  # learns of a cancel that came first: then nothing is queued
    if ctx.should_stop():
        return
    ids = queue.enqueue_many(db, "train", expand_sweep(job.params), group=job.params["study"], parent_id=job.id)
    ctx.progress(1.0, f"queued {len(ids)} training runs", force=True, result_update={"children": ids})
    ctx.log(f"queued {len(ids)} training jobs for study {job.params['study']!r}: {ids}")


def handle_sweep_ray(db: Database, job: queue.Job, ctx: JobContext) -> None:
    from jobs.ray_sweep import run_sweep_ray

    out = run_sweep_ray(db, expand_sweep(job.params), study=job.params["study"], job_id=job.id,
                        address=job.params.get("address"), progress=lambda f, s: ctx.progress(f, s),
                        log=ctx.log, should_stop=ctx.should_stop, owner=ctx.owner)
    summary = {k: out[k] for k in ("total", "skipped", "done", "failed", "cancelled")}
    ended = out["skipped"] + out["done"] + out["failed"]
    ctx.progress(ended / max(1, out["total"]), None, force=True, result_update={"ray": summary})
    if out["failed"] and not ctx.should_stop():
        first = next(iter(out["failures"].items()))
        raise RuntimeError(f"{out['failed']} of {out['total']} runs failed on Ray (run {first[0]}: {first[1]}); "
                           "resume re-runs them, finished runs are kept")


def handle_extract(db: Database, job: queue.Job, ctx: JobContext) -> None:
    from jobs.workflows import run_extraction

    run_extraction(db, **job.params, progress=lambda f, s: ctx.progress(f, s), log=ctx.log,
                   should_stop=ctx.should_stop, owner=ctx.owner)


def handle_demo(db: Database, job: queue.Job, ctx: JobContext) -> None:
    from jobs.datasets import ensure_demo

    ensure_demo(db, progress=lambda stage, done, total: ctx.progress(done / max(1, total), stage))


HANDLERS = {"train": handle_train, "sweep": handle_sweep, "extract": handle_extract, "demo": handle_demo}
