"""Read models for the dashboard: what is stored, as plain values and pandas frames.

Built on the public functions of the other storage modules (and the jobs table), never on Streamlit, so
the pages stay thin and everything here is testable without a browser.
"""
from __future__ import annotations

import numpy as np
from storage.lazy import pd

from storage.datasets import DatasetRecord, get_dataset, list_datasets, load_interactions
from storage.db import Database, NotFound
from storage.features import FeatureSetRecord, list_feature_sets
from storage.runs import RunRecord, list_runs, run_metrics

# the run columns' metrics: dff_core.metric_names.METRICS, which storage may not import (tests/test_house.py
# checks the two agree)
METRICS = ("NDCG@10", "HR@10", "NDCG@20", "HR@20", "MRR")
USABLE_FEATURE_STATUS = ("complete", "partial")
RUN_COLUMNS = (["run_id", "dataset", "study", "backbone", "features", "strategy", "layers", "n_layers", "layer",
                "seed", "status", "ending", "epochs", "best_epoch", "epoch_cap", "patience", "eval_every", "s_per_epoch", "seconds", "job_id", "device", "loss"]
               + [f"{split} {m}" for split in ("test", "val") for m in METRICS]
               + [f"{b} {m}" for b in ("cold", "warm") for m in METRICS]
               + ["cold users", "warm users", "cold threshold", "popularity test NDCG@10", "finished"])


# ------------------------------------------------------------------------------------------ overview

def counts(db: Database) -> dict:
    """Numbers for the Home page."""
    from storage.queue import list_jobs

    runs = list_runs(db)
    jobs = list_jobs(db)
    return {"datasets": len(list_datasets(db)), "feature_sets": len(list_feature_sets(db)),
            "runs_done": sum(r.status == "done" for r in runs), "runs": len(runs),
            "jobs_running": sum(j.status == "running" for j in jobs),
            "jobs_queued": sum(j.status == "queued" for j in jobs),
            "jobs_failed": sum(j.status in ("failed", "interrupted") for j in jobs)}


def dataset_names(db: Database) -> list[str]:
    return [d.name for d in list_datasets(db)]


def dataset_table(db: Database) -> pd.DataFrame:
    rows = []
    for d in list_datasets(db):
        s = d.stats
        rows.append({"name": d.name, "source": d.source, "users": s.get("users", 0), "items": s.get("items", 0),
                     "interactions": s.get("interactions", 0), "density": s.get("density"),
                     "median length": s.get("seq_len_median"), "items seen once": s.get("items_seen_once", 0),
                     "videos": s.get("videos", 0), "covers": s.get("covers", 0),
                     "warnings": len(d.warnings), "imported": d.created_at})
    return pd.DataFrame(rows)


def preprocessing_text(params: dict | None) -> str:
    """A dataset's preprocessing in words (``users with ≥ 5 interactions · each user's last 50 items · the 2,000
    most-interacted items · leave-one-out split``), not the stored dict; unknown keys are listed as they are."""
    p = dict(params or {})
    parts = []
    if p.get("top_items"):
        parts.append(f"the {int(p.pop('top_items')):,} most-interacted items")
    p.pop("top_items", None)
    if p.get("min_interactions") is not None:
        parts.append(f"users with ≥ {int(p.pop('min_interactions'))} interactions")
    if p.get("max_items_per_user"):
        parts.append(f"each user's last {int(p.pop('max_items_per_user'))} items")
    else:
        p.pop("max_items_per_user", None)
        parts.append("whole histories")
    if p.get("split"):
        parts.append(str(p.pop("split")).replace("_", "-") + " split")
    parts += [f"{k} {v}" for k, v in p.items() if v is not None]
    return " · ".join(parts)


def feature_bytes(items: int, layers: int, dim: int, dtype: str = "float16") -> int:
    """Stored size of a feature set's vectors (bytes per value: numpy's itemsize of the stored dtype)."""
    return int(items) * int(layers) * int(dim) * np.dtype(dtype).itemsize


def feature_set_table(db: Database, dataset: str | None = None) -> pd.DataFrame:
    names = {d.id: d.name for d in list_datasets(db)}
    rows = []
    for fs in list_feature_sets(db, dataset):
        rows.append({"id": fs.id, "name": fs.name, "dataset": names.get(fs.dataset_id, fs.dataset_id),
                     "backbone": fs.backbone, "kind": fs.kind, "inputs": ", ".join(fs.inputs),
                     "pooling": fs.pooling, "layers": fs.num_layers, "dim": fs.dim, "dtype": fs.dtype,
                     "items": fs.stats.get("items"), "status": fs.status,
                     "MB": round(feature_bytes(fs.stats.get("items") or 0, fs.num_layers, fs.dim, fs.dtype) / 1e6, 2),
                     "items/s": fs.stats.get("items_per_second"), "computed": computed_on(fs.params),
                     "created": fs.created_at})
    return pd.DataFrame(rows, columns=["id", "name", "dataset", "backbone", "kind", "inputs", "pooling", "layers",
                                       "dim", "dtype", "items", "status", "MB", "items/s", "computed", "created"])


def computed_on(params: dict | None) -> str:
    """``cpu, bfloat16`` / ``cuda:0, bfloat16`` / ``cpu, float32 + int8``: where and how a feature set was
    extracted (empty for sets stored before this was recorded, or imported)."""
    p = params or {}
    if not p.get("device"):
        return ""
    return f"{p['device']}, {p.get('compute_dtype') or '?'}" + (" + int8" if p.get("quantize") == "int8" else "")


def usable_feature_sets(db: Database, dataset: str) -> list[FeatureSetRecord]:
    """Feature sets of ``dataset`` that training can use (extraction finished, at least partly)."""
    return [fs for fs in list_feature_sets(db, dataset) if fs.status in USABLE_FEATURE_STATUS]


def family_throughput(db: Database, family: str) -> float | None:
    """Median items/s of earlier extractions with this backbone family (``family`` or ``family:checkpoint``)."""
    rates = [float(fs.stats["items_per_second"]) for fs in list_feature_sets(db)
             if fs.backbone.split(":", 1)[0] == family and fs.stats.get("items_per_second")]
    return float(np.median(rates)) if rates else None


# --------------------------------------------------------------------------------------------- data

def dataset_summary(ds: DatasetRecord) -> dict:
    s = ds.stats
    return {"users": s.get("users", 0), "items": s.get("items", 0), "interactions": s.get("interactions", 0),
            "density": s.get("density"), "median_length": s.get("seq_len_median"),
            "items_seen_once": s.get("items_seen_once", 0), "videos": s.get("videos", 0),
            "covers": s.get("covers", 0)}


def sequence_lengths(db: Database, dataset: str | int) -> np.ndarray:
    """Interactions per user (after preprocessing), one value per user."""
    ds = get_dataset(db, dataset)
    inter = load_interactions(db, ds.id)
    return inter.groupby("user_idx").size().to_numpy()


def item_popularity(db: Database, dataset: str | int) -> pd.DataFrame:
    """Items ranked by interaction count (the long tail): rank (1 = most popular), count, cumulative share."""
    ds = get_dataset(db, dataset)
    inter = load_interactions(db, ds.id)
    n = max(int(ds.stats.get("items", 0)), int(inter["item_idx"].max()) + 1 if len(inter) else 0)
    ordered = np.sort(np.bincount(inter["item_idx"].to_numpy(), minlength=n))[::-1]
    total = max(1, int(ordered.sum()))
    return pd.DataFrame({"rank": np.arange(1, len(ordered) + 1), "interactions": ordered,
                         "cumulative share": np.cumsum(ordered) / total})


# --------------------------------------------------------------------------------------------- runs

def layers_text(layers: list[int] | None, num_layers: int | None = None) -> str:
    """``all`` | ``8-20`` | ``30`` | ``1,4,9``: how a layer choice is written everywhere."""
    if not layers:
        return "all" if layers is None else "—"
    layers = sorted(int(x) for x in layers)
    if num_layers and layers == list(range(num_layers)):
        return "all"
    if len(layers) > 1 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(str(x) for x in layers)


def runs_frame(db: Database, status: str | None = "done", study: str | None = None) -> pd.DataFrame:
    """One row per run: identity, configuration, and every val/test/cold/warm metric as a column."""
    datasets = {d.id: d.name for d in list_datasets(db)}
    fsets = {fs.id: fs for fs in list_feature_sets(db)}
    rows = [_run_row(r, datasets, fsets) for r in list_runs(db, study=study)
            if status is None or r.status == status]
    frame = pd.DataFrame(rows)
    for c in RUN_COLUMNS:
        if c not in frame.columns:
            frame[c] = pd.Series(dtype=float)
    return frame[RUN_COLUMNS]


def _run_row(r: RunRecord, datasets: dict, fsets: dict) -> dict:
    fs = fsets.get(r.feature_set_id)
    res = r.result or {}
    uses_features = r.strategy != "id"
    layers = r.layers if uses_features else None
    row = {"run_id": r.id, "dataset": datasets.get(r.dataset_id, str(r.dataset_id)), "study": r.study or "",
           "backbone": ((fs.backbone if fs else r.config.get("backbone")) or "?") if uses_features else "ID only",
           "features": ((fs.name if fs else r.config.get("feature_set")) or "") if uses_features else "",
           "strategy": r.strategy,
           "layers": layers_text(layers, fs.num_layers if fs else None) if uses_features else "—",
           "n_layers": len(layers) if layers else (fs.num_layers if fs and uses_features else 0),
           "layer": int(layers[0]) if layers and len(layers) == 1 else None,
           "seed": r.seed, "status": r.status, "ending": r.ending or "", "epochs": r.epochs_run,
           "best_epoch": r.best_epoch, "epoch_cap": r.config.get("epochs"), "patience": r.config.get("patience"),
           "eval_every": r.config.get("eval_every"),
           "s_per_epoch": r.seconds_per_epoch, "seconds": r.seconds, "job_id": r.job_id,
           "finished": r.finished_at, "device": r.config.get("device") or "cpu", "loss": loss_text(r.config)}
    for split in ("test", "val"):
        for m in METRICS:
            row[f"{split} {m}"] = (res.get(split) or {}).get(m)
    buckets = res.get("test_buckets") or {}
    for b in ("cold", "warm"):
        bucket = buckets.get(b) or {}
        row[f"{b} users"] = bucket.get("users")
        for m in METRICS:
            row[f"{b} {m}"] = (bucket.get("metrics") or {}).get(m)
    row["popularity test NDCG@10"] = (res.get("popularity_test") or {}).get("NDCG@10")
    row["cold threshold"] = r.config.get("cold_threshold", 5)  # TrainConfig's default before it was stored
    return row


def run_summaries(db: Database, dataset: str | None = None, study: str | None = None) -> list[dict]:
    """Every stored run (finished, running, failed, cancelled), oldest first, as plain values:
    ``{run_id, status, dataset, features, strategy, layers, seed, study, engine, metrics: {val, test}}`` plus
    epochs, best epoch, seconds and the error of a failed run. ``metrics`` holds the final (best-epoch) values of
    a finished run, ``None`` before. Runs stored before the engine was recorded ran on the local engine."""
    datasets = {d.id: d.name for d in list_datasets(db)}
    fsets = {fs.id: fs for fs in list_feature_sets(db)}
    dataset_id = None
    if dataset is not None:
        dataset_id = get_dataset(db, dataset).id
    out = []
    for r in list_runs(db, dataset_id=dataset_id, study=study):
        fs = fsets.get(r.feature_set_id)
        res = r.result or {}
        out.append({"run_id": r.id, "status": r.status, "dataset": datasets.get(r.dataset_id, str(r.dataset_id)),
                    "features": (fs.name if fs else r.config.get("feature_set")) if r.strategy != "id" else None,
                    "strategy": r.strategy, "layers": r.layers if r.strategy != "id" else None, "seed": r.seed,
                    "study": r.study, "engine": r.config.get("engine") or "local",
                    "metrics": {"val": res.get("val"), "test": res.get("test")},
                    "epochs": r.epochs_run, "best_epoch": r.best_epoch, "ending": r.ending, "seconds": r.seconds,
                    "error": r.error})
    return out


def _early_stopped_runs(db: Database, dataset: str | None = None) -> list:
    """Finished, early-stopped runs of ``dataset`` (of any dataset for None; none for an unknown one)."""
    ds_id = None
    if dataset is not None:
        try:
            ds_id = get_dataset(db, dataset).id
        except NotFound:
            return []
    return [r for r in list_runs(db, dataset_id=ds_id) if r.status == "done" and r.ending == "early_stopped"]


def epochs_needed(db: Database, dataset: str | None = None) -> list[int]:
    """Epochs that finished, early-stopped runs (of ``dataset``, or of any) took: what a cap should exceed."""
    return [int(r.epochs_run) for r in _early_stopped_runs(db, dataset) if r.epochs_run]


def finished_run_epochs(db: Database, dataset_id: int) -> list[dict]:
    """Per finished run of a dataset: ``strategy``, ``config``, ``epochs``, ``ending``, ``layers``,
    ``seconds_per_epoch`` (its wall time over its epochs: training and validation), what the next runs like it will
    take per epoch, and ``side_by_side`` (how many training runs its worker ran at once: 1 when it says nothing)."""
    return [{"strategy": r.strategy, "config": r.config, "epochs": int(r.epochs_run), "ending": r.ending,
             "layers": r.layers, "seconds_per_epoch": float(r.seconds) / int(r.epochs_run),
             "side_by_side": int((r.result or {}).get("side_by_side") or 1)}
            for r in list_runs(db, dataset_id=dataset_id) if r.status == "done" and r.epochs_run and r.seconds]


def run_seconds(db: Database, dataset: str) -> list[float]:
    """Wall seconds of the finished, early-stopped runs of ``dataset``: what the next run like them will take
    (the demo study's estimate reads them). Empty when the dataset or such runs are missing."""
    return [float(r.seconds) for r in _early_stopped_runs(db, dataset) if r.seconds]


def job_seconds(db: Database, kind: str) -> list[float]:
    """Wall seconds (start to finish) of the finished jobs of ``kind``, oldest first."""
    from storage.queue import list_jobs

    out = []
    for j in list_jobs(db):
        if j.kind == kind and j.status == "done" and j.started_at is not None and j.finished_at is not None:
            out.append(max(0.0, (pd.Timestamp(j.finished_at) - pd.Timestamp(j.started_at)).total_seconds()))
    return out


def dataset_users(db: Database, dataset: str) -> int | None:
    """Users of a stored dataset (None when unknown): the training defaults scale with it."""
    try:
        return get_dataset(db, dataset).stats.get("users")
    except NotFound:
        return None


def loss_text(config: dict) -> str:
    """``full`` or ``sampled 256 uniform``; a config from before the loss option was full softmax."""
    if config.get("loss", "full") == "full":
        return "full"
    return f"sampled {config.get('negatives')} {config.get('negative_sampler', 'uniform')}"


def run_label(row) -> str:
    return f"#{row.run_id} {row.backbone} {row.layers} s{row.seed}"


def layer_weights_frame(db: Database, runs: pd.DataFrame) -> pd.DataFrame:
    """Learned DFF layer weights per run: the final ones from the run result, else the last epoch's stored ones."""
    dff = runs[runs["strategy"] == "dff"]
    rows, missing = [], []
    results = {r.id: r.result or {} for r in list_runs(db)} if len(dff) else {}  # one query, not one per run
    for row in dff.itertuples():
        weights = results.get(int(row.run_id), {}).get("layer_weights")
        if weights:
            rows += [{"run_id": int(row.run_id), "run": run_label(row), "layer": int(k), "weight": float(v)}
                     for k, v in weights.items()]
        else:
            missing.append((int(row.run_id), run_label(row)))
    if missing:
        m = run_metrics(db, [rid for rid, _ in missing])
        m = m[m["split"] == "layer_weight"]
        labels = dict(missing)
        for rid, group in m.groupby("run_id"):
            last = group[group["epoch"] == group["epoch"].max()]
            rows += [{"run_id": int(rid), "run": labels[int(rid)], "layer": int(n), "weight": float(v)}
                     for n, v in zip(last["name"], last["value"])]
    return pd.DataFrame(rows, columns=["run_id", "run", "layer", "weight"])


def run_curves(db: Database, run_id: int) -> pd.DataFrame:
    """Per-epoch curves of a run: columns epoch, series ("train loss", "val NDCG@10", ...), value."""
    m = run_metrics(db, [int(run_id)])
    keep = (((m["split"] == "train") & (m["name"] == "loss"))
            | ((m["split"] == "val") & m["name"].isin(["NDCG@10", "HR@10"])))
    m = m[keep]
    return pd.DataFrame({"epoch": m["epoch"].astype(int), "series": m["split"] + " " + m["name"],
                         "value": m["value"].astype(float)}).reset_index(drop=True)


# --------------------------------------------------------------------------------------------- jobs

def job_label(job) -> str:
    """What a job does, in one line."""
    p = job.params or {}
    if job.kind == "train":
        what = f"{p.get('strategy')} on {p.get('dataset')}"
        if p.get("features"):
            what += f" · {p.get('features')} layers {p.get('layers') or 'all'}"
        return what + f" · seed {p.get('seed', 42)}"
    on_ray = " · on Ray" if p.get("engine") == "ray" else ""
    if job.kind == "sweep" and p.get("runs"):
        return (f"study {p.get('study')}: {len(p['runs'])} strategy/feature choices × seeds "
                f"{', '.join(str(s) for s in p.get('seeds') or [])}{on_ray}")
    if job.kind == "sweep":
        return (f"study {p.get('study')}: {', '.join(p.get('strategies', []))} × layers "
                f"{'; '.join(p.get('layers') or ['all'])} × seeds {', '.join(str(s) for s in p.get('seeds') or [])}"
                f"{on_ray}")
    if job.kind == "extract":
        return f"{p.get('backbone')} → {p.get('name')} on {p.get('dataset')}"
    return "build the demo dataset"


def jobs_frame(jobs: list) -> pd.DataFrame:
    rows = [{"id": j.id, "kind": j.kind, "what": job_label(j), "status": j.status,
             "progress": float(j.progress or 0), "step": j.step or "",
             "eta_s": j.eta_seconds if j.status == "running" else None, "study": j.group_name or "",
             "run": (j.result or {}).get("run_id"), "error": j.error or "", "created": j.created_at}
            for j in jobs]
    return pd.DataFrame(rows, columns=["id", "kind", "what", "status", "progress", "step", "eta_s", "study", "run",
                                       "error", "created"])


ENDING_WORDS = {"early_stopped": "early-stopped", "capped_improving": "capped while improving",
                "capped_converged": "capped, converged", "cancelled": "cancelled"}  # dff_core.endings.LABELS


def job_outcomes(db: Database, jobs: list) -> dict[int, dict]:
    """What finished jobs produced, by job id: for a train job its run's ``ending`` (in words), ``epochs``,
    ``best_epoch``, ``epoch_cap`` and ``capped`` (hit the cap while still improving); for an extraction the
    feature set's ``stored`` and ``total`` items. The Jobs page shows these instead of the job's last progress
    step, which a worker reports before its final write (an extraction's "288/300 items")."""
    out: dict[int, dict] = {}
    run_ids = {int((j.result or {}).get("run_id")): j.id for j in jobs
               if j.kind == "train" and (j.result or {}).get("run_id") is not None}
    if run_ids:  # only the listed jobs' runs (a big study's thousands of other runs are not read every tick)
        for r in list_runs(db, ids=list(run_ids)):
            if r.id in run_ids:
                out[run_ids[r.id]] = {"ending": ENDING_WORDS.get(r.ending or "", r.ending or ""),
                                      "capped": r.ending == "capped_improving", "epochs": r.epochs_run,
                                      "best_epoch": r.best_epoch, "epoch_cap": r.config.get("epochs")}
    for j in jobs:
        if j.kind == "extract" and j.status == "done":
            p = j.params or {}
            try:
                fs = next(f for f in list_feature_sets(db, p.get("dataset")) if f.name == p.get("name"))
            except (NotFound, StopIteration):
                continue
            stored = int(fs.stats.get("items") or 0)
            out[j.id] = {"stored": stored, "total": stored + int(fs.stats.get("failed") or 0)}
    return out


def job_step_text(job, outcome: dict) -> str:
    """A job's step line: a finished job's result (``job_outcomes``: items stored, the run's ending) rather than
    its last progress step, which a worker reports before its final write; an extraction that has not reported
    yet is loading its backbone (its first report comes with the first batch)."""
    if job.status == "done" and "stored" in outcome:
        return f"{outcome['stored']}/{outcome['total']} items stored"
    if job.status == "done" and outcome.get("ending"):
        return f"{outcome['ending']} after {outcome['epochs']} epochs (best epoch {outcome['best_epoch']})"
    if job.status == "running" and job.kind == "extract" and not job.step:
        return "loading the backbone (items are counted from the first batch on)"
    return job.step or job.status


def demo_dataset_exists(db: Database, name: str) -> bool:
    try:
        get_dataset(db, name)
        return True
    except NotFound:
        return False
