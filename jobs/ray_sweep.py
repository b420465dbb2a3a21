"""A sweep (or study) on a Ray cluster: every training run is one Ray task, the job process is the driver.

Contract, so the Jobs page, cancel and resume behave as for a local sweep:

* **Data moves once.** The driver reads the split and, per feature set, the union of the layers the sweep
  uses from storage once, and ``ray.put``s each; tasks get them from the object store (zero-copy on a node)
  and slice their own layers. Never one DuckDB read per task.
* **Only the driver writes storage.** A run record is created (status ``running``) when its task is
  submitted; at most one task per free slot is in flight (one GPU per task when the cluster has GPUs, else
  ``num_threads`` CPUs, default 1), so ``running`` runs are the ones really training. When a task returns,
  the driver stores its per-epoch metrics and final result exactly as the local engine does
  (``workflows.store_epoch`` / ``store_result``) and reports progress.
* **Cancel** (``should_stop``, polled every ``POLL_S``): ``ray.cancel`` the in-flight tasks, mark their runs
  ``cancelled``; finished runs stay. **Resume** runs the same sweep again: runs already ``done`` under this
  job are skipped, the others start over (Ray tasks keep no checkpoint), reusing their run record.
* **Failures.** A task whose worker dies is retried by Ray (``max_retries``); a task that still fails, or
  raises, is recorded as a ``failed`` run with its reason and the others go on. The job then fails with a
  summary, so ``resume`` re-runs just those.

Each run stores ``engine: "ray"`` (and its device) in its config. Without ``address`` a local Ray instance
starts on this machine's CPUs (``DFF_RAY_CPU_REPLICAS``, default 2).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from storage import Database

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
                  should_stop: Callable[[], bool] | None = None) -> dict:
    """Train ``runs`` (``jobs.handlers.expand_sweep`` parameter sets, one dataset) as Ray tasks.

    Returns counts ``{total, skipped, done, failed, cancelled}`` and the failures ``{run_id: reason}``."""
    from jobs.popularity import cached_popularity
    from dff_core.extraction.ray_engine import _ray, connect
    from dff_core.models.item_encoders import FEATURE_STRATEGIES
    from dff_core.train.ray_task import train_task
    from dff_core.train.defaults import with_defaults
    from dff_core.train.trainer import TrainConfig
    from dff_core.layers import parse_layers
    from jobs.reads import load_training_features
    from jobs.workflows import store_epoch, store_result
    from storage.datasets import get_dataset
    from jobs.reads import load_split
    from storage.features import get_feature_set
    from storage.runs import clear_metrics, create_run, finish_run, list_runs, set_run_status

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

    # plan every run (parse layers once) and the layers each feature set must ship
    fsets: dict[str, object] = {}
    plans = []
    for r in todo:
        fs = None
        if r.get("features") and r["strategy"] in FEATURE_STRATEGIES:
            fs = fsets.get(r["features"]) or get_feature_set(db, r["features"], dataset=ds.id)
            fsets[r["features"]] = fs
        layer_ids = parse_layers(r.get("layers"), fs.num_layers) if fs is not None else None
        if fs is not None and layer_ids is None:
            layer_ids = list(range(fs.num_layers))
        plans.append((r, fs, layer_ids))

    ray = _ray()
    owns = connect(address, num_cpus=num_cpus)
    try:
        log("reading the split and features once for the object store")
        split = load_split(db, ds.id)
        popularity = cached_popularity(db, ds.id, split)
        split_ref = ray.put(split)
        shipped: dict[str, tuple] = {}  # feature set name -> (ref, {layer: position}, items without vectors)
        for name, fs in fsets.items():
            union = sorted({l for _, f, ls in plans if f is fs for l in ls})
            dtype = np.float16 if fs.dtype == "float16" else np.float32  # float16 ships half the bytes, same values
            feats, union, missing = load_training_features(db, ds.id, fs, union, dtype=dtype)
            shipped[name] = (ray.put(feats), {l: i for i, l in enumerate(union)}, missing)
            log(f"feature set {name!r}: {len(union)} layers, {feats.nbytes / 1e6:.1f} MB in the object store")
            del feats

        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        threads = int((runs[0].get("settings") or {}).get("num_threads") or 1)
        if gpus:
            options, slots, device = {"num_gpus": 1, "num_cpus": 1}, gpus, "cuda"
        else:
            per = max(1, min(threads, int(resources.get("CPU", 1))))
            options, slots, device = {"num_cpus": per}, max(1, int(resources.get("CPU", 1)) // per), "cpu"
        remote = ray.remote(train_task).options(max_retries=max_retries, retry_exceptions=False, **options)
        each = "1 GPU" if gpus else f"{options['num_cpus']} CPU"
        log(f"Ray: {len(todo)} runs as tasks, {slots} at a time ({each} each; cluster "
            f"{resources.get('CPU', 0):.0f} CPUs, {gpus} GPUs)")

        queue = list(plans)
        inflight: dict = {}  # ref -> (run id, params, layer ids, started)
        finished = skipped

        def report() -> None:
            progress(finished / len(runs), f"{finished}/{len(runs)} runs finished, {len(inflight)} running on Ray")

        while queue or inflight:
            while queue and len(inflight) < slots and not should_stop():
                r, fs, layer_ids = queue.pop(0)
                cfg = TrainConfig(strategy=r["strategy"], layers=None, seed=int(r["seed"]),
                                  **with_defaults(r.get("settings"), ds.stats.get("users")))
                cfg.device = device
                ref_feats, positions, missing = (shipped[fs.name] if fs is not None and fs.name in shipped
                                                 else (None, {}, 0))
                config = {**cfg.to_dict(), "layers": layer_ids, "feature_set": fs.name if fs else None,
                          "backbone": fs.backbone if fs else None, "items_without_features": missing,
                          "engine": "ray", "sweep_key": sweep_key(r)}
                old = existing.get(sweep_key(r))
                if old is not None:
                    run_id = old.id
                    clear_metrics(db, run_id)
                    set_run_status(db, run_id, "running")
                else:
                    run_id = create_run(db, ds.id, r["strategy"], config, feature_set_id=fs.id if fs else None,
                                        layers=layer_ids, seed=int(r["seed"]), study=study, job_id=job_id).id
                pos = [positions[l] for l in layer_ids] if ref_feats is not None else None
                ref = remote.remote(split_ref, cfg.to_dict(), ref_feats, pos)
                inflight[ref] = (run_id, r, layer_ids, time.perf_counter())
            report()
            if should_stop():
                for ref, (run_id, r, _, _) in inflight.items():
                    ray.cancel(ref, force=True)
                    finish_run(db, run_id, "cancelled", error="cancelled with its sweep; resume runs it again",
                               ending="cancelled")
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
                    finish_run(db, run_id, "failed", error=reason)
                    counts["failed"] += 1
                    counts["failures"][run_id] = reason
                    log(f"run {run_id} ({sweep_key(r)}) failed: {reason}")
                else:
                    for record in result["history"]:
                        store_epoch(db, run_id, record, layer_ids)
                    store_result(db, run_id, result, layer_ids, popularity, time.perf_counter() - started)
                    counts["done"] += 1
                    log(f"run {run_id} ({sweep_key(r)}) done on {result['host']} ({result['device']}): test NDCG@10 "
                        f"{result['test']['NDCG@10']:.4f}, {result['seconds']:.1f} s")
                finished += 1
        report()
        return counts
    finally:
        if owns:
            ray.shutdown()
