"""A sweep (or study) on a Ray cluster: every training run is one Ray task, the job process is the driver.

Contract, so the Jobs page, cancel and resume behave as for a local sweep:

* **Data moves once.** The driver reads the split and, per feature set, the union of the layers the sweep
  uses from storage once, and ``ray.put``s each; tasks get them from the object store (zero-copy on a node)
  and slice their own layers. Never one DuckDB read per task.
* **Both engines train the same run.** Each run's settings come from ``jobs.run_settings.plan_run``, as for
  the local engine (defaults, the dataset-size rule, probe scores for DFF ``layer_init=probe``, features);
  a finished run keeps its checkpoint and item vectors beside it like a local run, so Explore opens it.
* **Only the driver writes storage**, under the sweep job's claim (``owner``), like a local runner. A run
  record is created (status ``running``) when its task is submitted; at most one task per free slot is in
  flight (one GPU per task when the cluster has GPUs, else ``num_threads`` CPUs, default 1), so ``running``
  runs are the ones really training. When a task returns,
  the driver stores its per-epoch metrics and final result exactly as the local engine does
  (``workflows.store_epoch`` / ``store_result``) and reports progress.
* **Cancel** (``should_stop``, polled every ``POLL_S``): ``ray.cancel`` the in-flight tasks, mark their runs
  ``cancelled``; finished runs stay. **Resume** runs the same sweep again: runs already ``done`` under this
  job are skipped, the others start over (Ray tasks resume no checkpoint), reusing their run record with this
  attempt's settings (``storage.runs.restart_run``: no config, epochs or error of the last attempt kept).
* **Failures.** A task whose worker dies is retried by Ray (``max_retries``); a task that still fails, or
  raises, is recorded as a ``failed`` run with its reason and the others go on. The job then fails with a
  summary, so ``resume`` re-runs just those.

Each run stores ``engine: "ray"`` (and its device) in its config. Without ``address`` a local Ray instance
starts on this machine's CPUs (``DFF_RAY_CPU_REPLICAS``, default 2).
"""
from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from dff_core.train.defaults import CHECKPOINT_NAME
from storage import Database
from storage.owners import NotOwner, Owner, still_owns

POLL_S = 0.5
MAX_RETRIES = 2


def sweep_key(run: dict) -> str:
    """Identity of one run of a sweep (its resume key): strategy, feature set, layer choice, seed."""
    return f"{run['strategy']}|{run.get('features') or ''}|{run.get('layers') or ''}|{int(run['seed'])}"


def _reason(exc: BaseException) -> str:
    """One line for a failed task: the task's own exception when Ray wraps one, else Ray's error."""
    cause = getattr(exc, "cause", None)
    err = cause if isinstance(cause, BaseException) else exc
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"[:500]


def run_sweep_ray(db: Database, runs: list[dict], *, study: str, job_id: int | None = None,
                  address: str | None = None, num_cpus: int | None = None, max_retries: int = MAX_RETRIES,
                  progress: Callable[[float, str], None] | None = None, log: Callable[[str], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, owner: Owner | None = None) -> dict:
    """Train ``runs`` (``jobs.handlers.expand_sweep`` parameter sets, one dataset) as Ray tasks.

    ``owner`` (the sweep job's claim) fences every write, as for a local run: once the job is no longer this
    driver's, the next write raises ``NotOwner``, the tasks in flight are cancelled and nothing more is written.
    Returns counts ``{total, skipped, done, failed, cancelled}`` and the failures ``{run_id: reason}``."""
    from jobs.popularity import cached_popularity
    from jobs.run_settings import feature_set_of, plan_run
    from dff_core.extraction.ray_engine import _ray, connect
    from dff_core.models.item_encoders import FEATURE_STRATEGIES
    from dff_core.train.ray_task import train_task
    from jobs.reads import load_training_features
    from jobs.workflows import store_epoch
    from storage.datasets import get_dataset
    from jobs.reads import load_split
    from storage.runs import create_run, finish_run, list_runs, restart_run

    log = log or (lambda line: None)
    progress = progress or (lambda f, s: None)
    should_stop = should_stop or (lambda: False)
    if not runs:
        return {"total": 0, "skipped": 0, "done": 0, "failed": 0, "cancelled": 0, "failures": {}}
    names = {r["dataset"] for r in runs}
    if len(names) != 1:
        raise ValueError(f"a sweep trains on one dataset, not {sorted(names)}")
    ds = get_dataset(db, names.pop())

    # what is already finished under this job (resume) and the run records to reuse
    existing = {r.config.get("sweep_key"): r for r in list_runs(db, dataset_id=ds.id, study=study)
                if job_id is not None and r.job_id == job_id and r.config.get("engine") == "ray"}
    todo = [r for r in runs if not (existing.get(sweep_key(r)) and existing[sweep_key(r)].status == "done")]
    skipped = len(runs) - len(todo)
    counts = {"total": len(runs), "skipped": skipped, "done": 0, "failed": 0, "cancelled": 0, "failures": {}}
    if skipped:
        log(f"resuming: {skipped} of {len(runs)} runs already finished are skipped")
    if not todo:
        progress(1.0, f"all {len(runs)} runs finished")
        return counts

    ray = _ray()
    owns = connect(address, num_cpus=num_cpus)
    inflight: dict = {}  # ref -> (run id, params, plan, started)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        threads = int((runs[0].get("settings") or {}).get("num_threads") or 1)
        if gpus:
            options, slots, device = {"num_gpus": 1, "num_cpus": 1}, gpus, "cuda"
        else:
            per = max(1, min(threads, int(resources.get("CPU", 1))))
            options, slots, device = {"num_cpus": per}, max(1, int(resources.get("CPU", 1)) // per), "cpu"

        # every run planned as the local engine plans it (jobs.run_settings), each feature set read once
        fsets: dict[str, object] = {}
        plans = []
        for r in todo:
            features = None
            if r.get("features") and r["strategy"] in FEATURE_STRATEGIES:
                features = fsets.get(r["features"]) or feature_set_of(db, ds, r["features"])
                fsets[r["features"]] = features
            plan = plan_run(db, ds, r["strategy"], features=features, layers=r.get("layers"),
                            settings=r.get("settings"), seed=int(r["seed"]), device=device)
            plans.append((r, plan))

        log("reading the split and features once for the object store")
        split = load_split(db, ds.id)
        popularity = cached_popularity(db, ds.id, split)
        split_ref = ray.put(split)
        shipped: dict[str, tuple] = {}  # feature set name -> (ref, {layer: position}, items without vectors)
        for name, fs in fsets.items():
            union = sorted({l for _, p in plans if p.fs is fs for l in p.layer_ids})
            dtype = np.float16 if fs.dtype == "float16" else np.float32  # float16 ships half the bytes, same values
            feats, union, missing = load_training_features(db, ds.id, fs, union, dtype=dtype)
            shipped[name] = (ray.put(feats), {l: i for i, l in enumerate(union)}, missing)
            log(f"feature set {name!r}: {len(union)} layers, {feats.nbytes / 1e6:.1f} MB in the object store")
            del feats

        remote = ray.remote(train_task).options(max_retries=max_retries, retry_exceptions=False, **options)
        each = "1 GPU" if gpus else f"{options['num_cpus']} CPU"
        log(f"Ray: {len(todo)} runs as tasks, {slots} at a time ({each} each; cluster "
            f"{resources.get('CPU', 0):.0f} CPUs, {gpus} GPUs)")

        queue = list(plans)
        finished = skipped

        def report() -> None:
            progress(finished / len(runs), f"{finished}/{len(runs)} runs finished, {len(inflight)} running on Ray")

        while queue or inflight:
            while queue and len(inflight) < slots and not should_stop():
                r, plan = queue.pop(0)
                fs, layer_ids = plan.fs, plan.layer_ids
                ref_feats, positions, missing = (shipped[fs.name] if fs is not None and fs.name in shipped
                                                 else (None, {}, 0))
                config = plan.config(missing, engine="ray", sweep_key=sweep_key(r))
                old = existing.get(sweep_key(r))
                if old is not None:  # starts over: this attempt's settings, no epochs or outcome of the last one
                    run_id = restart_run(db, old.id, config, fresh=True, feature_set_id=fs.id if fs else None,
                                         layers=layer_ids, owner=owner).id
                    _forget_files(db, run_id)
                else:
                    run_id = create_run(db, ds.id, r["strategy"], config, feature_set_id=fs.id if fs else None,
                                        layers=layer_ids, seed=int(r["seed"]), study=study, job_id=job_id,
                                        owner=owner).id
                pos = [positions[l] for l in layer_ids] if ref_feats is not None else None
                ref = remote.remote(split_ref, plan.cfg.to_dict(), ref_feats, pos)
                inflight[ref] = (run_id, r, layer_ids, time.perf_counter())
            report()
            if should_stop():
                for ref, (run_id, r, _, _) in inflight.items():
                    ray.cancel(ref, force=True)
                    finish_run(db, run_id, "cancelled", error="cancelled with its sweep; resume runs it again",
                               ending="cancelled", owner=owner)
                    counts["cancelled"] += 1
                log(f"cancelled: {len(inflight)} running tasks stopped, {len(queue)} runs not started")
                inflight.clear()
                break
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL_S)
            for ref in ready:
                run_id, r, layer_ids, started = inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the task raised, or its worker died max_retries + 1 times
                    reason = _reason(exc)
                    finish_run(db, run_id, "failed", error=reason, owner=owner)
                    counts["failed"] += 1
                    counts["failures"][run_id] = reason
                    log(f"run {run_id} ({sweep_key(r)}) failed: {reason}")
                else:
                    for record in result["history"]:
                        store_epoch(db, run_id, record, layer_ids, owner=owner)
                    store_finished(db, run_id, result, layer_ids, popularity, time.perf_counter() - started,
                                   owner=owner)
                    counts["done"] += 1
                    log(f"run {run_id} ({sweep_key(r)}) done on {result['host']} ({result['device']}): test NDCG@10 "
                        f"{result['test']['NDCG@10']:.4f}, {result['seconds']:.1f} s")
                finished += 1
        report()
        return counts
    except NotOwner:
        for ref in inflight:  # the sweep is someone else's now: its tasks stop, nothing more is written
            ray.cancel(ref, force=True)
        raise
    finally:
        if owns:
            ray.shutdown()


def store_finished(db: Database, run_id: int, result: dict, layer_ids: list[int] | None, popularity: dict,
                   wall_seconds: float, *, owner: Owner | None = None) -> None:
    """A finished task's checkpoint and item vectors beside the run (as a local run keeps them, so Explore opens
    it), then its result (``jobs.workflows.store_result``: status done). The files are written only while
    ``owner`` still holds the job; the result write checks it again in its transaction."""
    from jobs.neighbours.models import save_run_vectors
    from jobs.workflows import store_result
    from storage.runs import checkpoint_dir

    if not still_owns(db, owner):
        raise NotOwner(f"job {owner.job_id} is no longer this driver's; stopping without writing")
    folder = checkpoint_dir(db, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_NAME
    tmp = path.with_name(f".{CHECKPOINT_NAME}.{os.getpid()}.tmp")
    tmp.write_bytes(result["checkpoint"])
    tmp.replace(path)
    save_run_vectors(db, run_id, result["vectors"])
    store_result(db, run_id, result, layer_ids, popularity, wall_seconds, owner=owner)


def _forget_files(db: Database, run_id: int) -> None:
    """A restarted run's checkpoint and vectors from its last attempt: gone, so nothing reads them as this one's."""
    import shutil

    from storage.runs import checkpoint_dir

    shutil.rmtree(checkpoint_dir(db, run_id), ignore_errors=True)
