"""Data for the dashboard pages, built on the public functions of ``storage``, ``jobs`` and ``dff_core``.

No Streamlit here: every function takes a ``Database`` and returns plain values or pandas frames, so the
pages stay thin and the logic is testable without a browser.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from storage import Database, NotFound
from storage.datasets import DatasetRecord, get_dataset, list_datasets, load_interactions, load_split
from storage.features import FeatureSetRecord, get_feature_set, list_feature_sets, read_features
from storage.runs import RunRecord, list_runs, run_metrics

METRICS = ("NDCG@10", "HR@10", "NDCG@20", "HR@20", "MRR")
MAIN_STRATEGIES = ("id", "replace", "init", "add", "concat", "gate", "dff")
USABLE_FEATURE_STATUS = ("complete", "partial")
DEMO_STUDY = "demo-study"
DEMO_FEATURES = "smollm2-demo"
DEMO_BACKBONE = "smollm2"

# Rough extraction throughput on a laptop-class CPU (items per second) by backbone family; shown as an
# estimate only. Unknown families fall back to DEFAULT_ITEMS_PER_S.
ITEMS_PER_S = {"smollm2": 25.0, "minilm": 150.0, "efficientnet-lite0": 20.0, "qwen2-vl": 0.3,
               "qwen2.5-vl": 0.3, "llava": 0.3, "llava-next": 0.2, "idefics": 0.3, "smolvlm": 1.0}
DEFAULT_ITEMS_PER_S = 1.0
FRAME_COST = 0.08  # extra fraction of time per video frame beyond the first, for families that take frames


# ------------------------------------------------------------------------------------------ overview

def counts(db: Database) -> dict:
    """Numbers for the Home page."""
    from jobs.queue import list_jobs

    runs = list_runs(db)
    jobs = list_jobs(db)
    return {"datasets": len(list_datasets(db)), "feature_sets": len(list_feature_sets(db)),
            "runs_done": sum(r.status == "done" for r in runs), "runs": len(runs),
            "jobs_running": sum(j.status == "running" for j in jobs),
            "jobs_queued": sum(j.status == "queued" for j in jobs),
            "jobs_failed": sum(j.status in ("failed", "interrupted") for j in jobs)}


def dataset_names(db: Database) -> list[str]:
    return [d.name for d in list_datasets(db)]


def feature_set_table(db: Database, dataset: str | None = None) -> pd.DataFrame:
    names = {d.id: d.name for d in list_datasets(db)}
    rows = []
    for fs in list_feature_sets(db, dataset):
        rows.append({"id": fs.id, "name": fs.name, "dataset": names.get(fs.dataset_id, fs.dataset_id),
                     "backbone": fs.backbone, "kind": fs.kind, "inputs": ", ".join(fs.inputs),
                     "pooling": fs.pooling, "layers": fs.num_layers, "dim": fs.dim, "dtype": fs.dtype,
                     "items": fs.stats.get("items"), "status": fs.status,
                     "MB": round(feature_bytes(fs.stats.get("items") or 0, fs.num_layers, fs.dim,
                                               2 if fs.dtype == "float16" else 4) / 1e6, 2),
                     "created": fs.created_at})
    return pd.DataFrame(rows, columns=["id", "name", "dataset", "backbone", "kind", "inputs", "pooling", "layers",
                                       "dim", "dtype", "items", "status", "MB", "created"])


def usable_feature_sets(db: Database, dataset: str) -> list[FeatureSetRecord]:
    """Feature sets of ``dataset`` that training can use (extraction finished, at least partly)."""
    return [fs for fs in list_feature_sets(db, dataset) if fs.status in USABLE_FEATURE_STATUS]


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
    counts_ = np.bincount(inter["item_idx"].to_numpy(), minlength=int(ds.stats.get("items", 0)))
    ordered = np.sort(counts_)[::-1]
    total = max(1, int(ordered.sum()))
    return pd.DataFrame({"rank": np.arange(1, len(ordered) + 1), "interactions": ordered,
                         "cumulative share": np.cumsum(ordered) / total})


def save_upload(db: Database, dataset_name: str, filename: str, data: bytes) -> Path:
    """Keep an uploaded file under the database folder (``uploads/<dataset>/<file>``) and return its path."""
    safe_ds = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset_name) or "dataset"
    safe_file = Path(filename).name or "upload"
    folder = db.path.parent / "uploads" / safe_ds
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe_file
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------- runs

def layers_text(layers: list[int] | None, num_layers: int | None = None) -> str:
    """``all`` | ``8-20`` | ``30`` | ``1,4,9``: how a layer choice is written everywhere."""
    if not layers:
        return "all" if layers is None else "—"
    layers = sorted(int(l) for l in layers)
    if num_layers and layers == list(range(num_layers)):
        return "all"
    if len(layers) > 1 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(str(l) for l in layers)


def runs_frame(db: Database, status: str | None = "done") -> pd.DataFrame:
    """One row per run: identity, configuration, and every val/test metric as a column."""
    datasets = {d.id: d.name for d in list_datasets(db)}
    fsets = {fs.id: fs for fs in list_feature_sets(db)}
    rows = []
    for r in list_runs(db):
        if status is not None and r.status != status:
            continue
        rows.append(_run_row(r, datasets, fsets))
    columns = ["run_id", "dataset", "study", "backbone", "features", "strategy", "layers", "n_layers", "layer",
               "seed", "status", "epochs", "best_epoch", "s_per_epoch", "seconds", "job_id"]
    columns += [f"{split} {m}" for split in ("test", "val") for m in METRICS]
    columns += [f"{b} {m}" for b in ("cold", "warm") for m in METRICS] + ["cold users", "warm users"]
    columns += ["popularity test NDCG@10", "finished"]
    frame = pd.DataFrame(rows)
    for c in columns:
        if c not in frame.columns:
            frame[c] = pd.Series(dtype=float)
    return frame[columns]


def _run_row(r: RunRecord, datasets: dict, fsets: dict) -> dict:
    fs = fsets.get(r.feature_set_id)
    res = r.result or {}
    layers = r.layers if r.strategy != "id" else None
    row = {"run_id": r.id, "dataset": datasets.get(r.dataset_id, str(r.dataset_id)), "study": r.study or "",
           "backbone": (fs.backbone if fs else r.config.get("backbone")) if r.strategy != "id" else "ID only",
           "features": (fs.name if fs else r.config.get("feature_set") or "") if r.strategy != "id" else "",
           "strategy": r.strategy,
           "layers": layers_text(layers, fs.num_layers if fs else None) if r.strategy != "id" else "—",
           "n_layers": len(layers) if layers else (fs.num_layers if fs and r.strategy != "id" else 0),
           "layer": int(layers[0]) if layers and len(layers) == 1 else None,
           "seed": r.seed, "status": r.status, "epochs": r.epochs_run, "best_epoch": r.best_epoch,
           "s_per_epoch": r.seconds_per_epoch, "seconds": r.seconds, "job_id": r.job_id,
           "finished": r.finished_at}
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
    return row


def filter_runs(runs: pd.DataFrame, datasets=None, backbones=None, strategies=None, studies=None) -> pd.DataFrame:
    out = runs
    for col, values in (("dataset", datasets), ("backbone", backbones), ("strategy", strategies),
                        ("study", studies)):
        if values:
            out = out[out[col].isin(values)]
    return out


GROUP = ["dataset", "backbone", "features", "strategy", "layers"]


def leaderboard(runs: pd.DataFrame, metric: str = "NDCG@10", split: str = "test") -> pd.DataFrame:
    """Mean ± std over seeds of ``split metric`` per (dataset, backbone, features, strategy, layers), best first."""
    col = f"{split} {metric}"
    cols = GROUP + ["seeds", "mean", "std", f"{metric} (mean ± std)", "runs"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    g = runs.dropna(subset=[col]).groupby(GROUP, dropna=False, sort=False)
    out = g.agg(seeds=("run_id", "size"), mean=(col, "mean"), std=(col, "std"),
                runs=("run_id", lambda s: ", ".join(str(int(v)) for v in s))).reset_index()
    out["std"] = out["std"].fillna(0.0)
    out[f"{metric} (mean ± std)"] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(out["mean"], out["std"])]
    return out.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)[cols]


def layer_curve(runs: pd.DataFrame, metric: str = "NDCG@10", split: str = "test") -> pd.DataFrame:
    """Single-layer runs: mean and std of the metric per (backbone, strategy, layer), ordered by layer."""
    col = f"{split} {metric}"
    single = runs[runs["layer"].notna()].dropna(subset=[col])
    if single.empty:
        return pd.DataFrame(columns=["backbone", "features", "strategy", "layer", "mean", "std", "seeds"])
    out = single.groupby(["backbone", "features", "strategy", "layer"]).agg(
        mean=(col, "mean"), std=(col, "std"), seeds=(col, "size")).reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["layer"] = out["layer"].astype(int)
    return out.sort_values(["backbone", "strategy", "layer"]).reset_index(drop=True)


def strategy_bars(runs: pd.DataFrame, metric: str = "NDCG@10", split: str = "test") -> pd.DataFrame:
    """Mean ± std per (strategy, backbone) — the best layer choice of each, so bars compare like with like."""
    board = leaderboard(runs, metric, split)
    if board.empty:
        return board
    best = board.sort_values("mean", ascending=False).groupby(["dataset", "backbone", "strategy"], sort=False).head(1)
    return best.reset_index(drop=True)


def layer_weights_frame(db: Database, runs: pd.DataFrame) -> pd.DataFrame:
    """Learned DFF layer weights (final, from run results; else the last epoch's stored ``layer_weight``)."""
    from storage.runs import get_run

    dff = runs[runs["strategy"] == "dff"]
    rows = []
    missing = []
    for rid, label in zip(dff["run_id"], _run_labels(dff)):
        res = get_run(db, int(rid)).result or {}
        weights = res.get("layer_weights")
        if weights:
            rows += [{"run_id": int(rid), "run": label, "layer": int(k), "weight": float(v)} for k, v in weights.items()]
        else:
            missing.append((int(rid), label))
    if missing:
        m = run_metrics(db, [rid for rid, _ in missing])
        m = m[m["split"] == "layer_weight"]
        labels = dict(missing)
        for rid, group in m.groupby("run_id"):
            last = group[group["epoch"] == group["epoch"].max()]
            rows += [{"run_id": int(rid), "run": labels[int(rid)], "layer": int(n), "weight": float(v)}
                     for n, v in zip(last["name"], last["value"])]
    return pd.DataFrame(rows, columns=["run_id", "run", "layer", "weight"])


def _run_labels(runs: pd.DataFrame) -> list[str]:
    return [f"#{r.run_id} {r.backbone} {r.layers} s{r.seed}" for r in runs.itertuples()]


def bucket_frame(runs: pd.DataFrame, metric: str = "NDCG@10") -> pd.DataFrame:
    """Cold vs warm test targets: mean over seeds per (backbone, strategy, bucket)."""
    rows = []
    for bucket in ("cold", "warm"):
        col = f"{bucket} {metric}"
        part = runs.dropna(subset=[col])
        if part.empty:
            continue
        g = part.groupby(["backbone", "strategy"]).agg(mean=(col, "mean"), std=(col, "std"),
                                                        users=(f"{bucket} users", "max")).reset_index()
        g["bucket"] = bucket
        rows.append(g)
    if not rows:
        return pd.DataFrame(columns=["backbone", "strategy", "mean", "std", "users", "bucket"])
    out = pd.concat(rows, ignore_index=True)
    out["std"] = out["std"].fillna(0.0)
    return out


# ------------------------------------------------------------------------------------------ layers

def layer_usefulness(db: Database, fs: FeatureSetRecord, k: int = 10, max_items: int = 1000,
                     seed: int = 0, max_batch_bytes: int = 256 * 2 ** 20) -> pd.DataFrame:
    """A cheap per-layer usefulness score: co-watch agreement of cosine neighbours.

    For a sample of items (at most ``max_items``) that have vectors and appear in training histories, take
    each item's ``k`` nearest neighbours by cosine similarity of the mean-centred layer vectors, and count
    the fraction that co-occur with it in some user's training history. ``chance`` is the same fraction for
    random neighbours, so ``lift = score / chance``. Layers are read a few at a time.
    """
    from scipy import sparse

    split = load_split(db, fs.dataset_id)
    users = np.repeat(np.arange(len(split.train)), [len(t) for t in split.train])
    items = np.concatenate(split.train) if split.train else np.zeros(0, dtype=np.int64)
    B = sparse.csr_matrix((np.ones(len(items), dtype=np.float32), (users, items)),
                          shape=(len(split.train), split.num_items))
    B.data[:] = 1.0
    seen = np.asarray(B.sum(axis=0)).ravel() > 0
    _, present = read_features(db, fs, layers=[0], dtype=np.float16)
    candidates = np.flatnonzero(seen & present)
    if len(candidates) < k + 2:
        raise ValueError(f"feature set {fs.name!r} has too few items with vectors and training interactions "
                         f"({len(candidates)}) to score layers")
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(candidates, size=min(max_items, len(candidates)), replace=False))
    m = len(sample)
    Bs = B[:, sample].tocsc()
    co = (Bs.T @ Bs).toarray() > 0
    np.fill_diagonal(co, False)
    chance = float(co.sum() / (m * (m - 1)))
    kk = min(k, m - 1)
    per_layer_bytes = max(1, len(present) * fs.dim * 2)
    batch = max(1, int(max_batch_bytes // per_layer_bytes))
    scores = []
    for start in range(0, fs.num_layers, batch):
        layer_ids = list(range(start, min(fs.num_layers, start + batch)))
        feats, _ = read_features(db, fs, layers=layer_ids, dtype=np.float16)
        sub = feats[sample].astype(np.float32)
        del feats
        for j, layer in enumerate(layer_ids):
            x = sub[:, j, :]
            x = x - x.mean(axis=0, keepdims=True)
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
            sim = x @ x.T
            np.fill_diagonal(sim, -np.inf)
            nn = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
            scores.append(float(co[np.arange(m)[:, None], nn].mean()))
    out = pd.DataFrame({"layer": np.arange(fs.num_layers), "score": scores})
    out["chance"] = chance
    out["lift"] = out["score"] / chance if chance > 0 else np.nan
    out.attrs["items"] = m
    return out


def layer_read_bytes(fs: FeatureSetRecord, num_items: int) -> int:
    return num_items * fs.num_layers * fs.dim * (2 if fs.dtype == "float16" else 4)


def layer_spec(mode: str, num_layers: int, span: tuple[int, int] | None = None,
               picked: list[int] | None = None) -> str:
    """The layer string a job takes (``all``, ``A-B``, ``i,j,k``) from the picker's state."""
    if mode == "all":
        return "all"
    if mode == "range":
        a, b = span if span else (0, num_layers - 1)
        return "all" if (a, b) == (0, num_layers - 1) else (f"{a}" if a == b else f"{a}-{b}")
    if not picked:
        raise ValueError("pick at least one layer")
    return ",".join(str(l) for l in sorted(set(int(p) for p in picked)))


# ------------------------------------------------------------------------------------------ jobs

def check_train_params(db: Database, params: dict) -> None:
    """Refuse up front what would fail in the worker: unknown dataset/feature set, missing features, bad layers."""
    from dff_core.models.item_encoders import FEATURE_STRATEGIES, STRATEGIES
    from dff_core.workflows import parse_layers

    if params["strategy"] not in STRATEGIES:
        raise ValueError(f"unknown strategy {params['strategy']!r}; choose from {', '.join(STRATEGIES)}")
    ds = get_dataset(db, params["dataset"])
    if params["strategy"] in FEATURE_STRATEGIES and not params.get("features"):
        raise ValueError(f"strategy {params['strategy']!r} needs a feature set; only 'id' trains without one")
    if params.get("features"):
        fs = get_feature_set(db, params["features"], dataset=ds.id)
        if fs.status not in USABLE_FEATURE_STATUS:
            raise ValueError(f"feature set {fs.name!r} is {fs.status}; wait for its extraction to finish")
        parse_layers(params.get("layers"), fs.num_layers)


def enqueue_train(db: Database, dataset: str, strategy: str, features: str | None, layers: str,
                  settings: dict, seed: int, study: str | None = None) -> int:
    from jobs.queue import enqueue

    features = features if strategy != "id" else None
    params = {"dataset": dataset, "strategy": strategy, "features": features,
              "layers": layers if features else None, "seed": int(seed), "settings": settings,
              "study": study or None}
    check_train_params(db, params)
    return enqueue(db, "train", params, group=study or None)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in str(text).replace(";", ",").split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"seeds must be a comma list of integers, e.g. 1,2,3 — not {text!r}") from None
    if not seeds:
        raise ValueError("give at least one seed")
    return seeds


def parse_layer_choices(text: str) -> list[str]:
    choices = [c.strip() for c in str(text).split(";") if c.strip()]
    return choices or ["all"]


def sweep_size(strategies: list[str], layer_choices: list[str], seeds: list[int]) -> int:
    from jobs.handlers import expand_sweep

    return len(expand_sweep({"dataset": "", "features": None, "strategies": strategies, "layers": layer_choices,
                             "seeds": seeds, "study": ""}))


def enqueue_sweep(db: Database, dataset: str, features: str | None, strategies: list[str], layer_choices: list[str],
                  seeds: list[int], study: str, settings: dict) -> int:
    from jobs.queue import enqueue

    if not study or not study.strip():
        raise ValueError("name the study: its runs are grouped under that name on the Compare page")
    if not strategies:
        raise ValueError("pick at least one strategy")
    feature_strats = [s for s in strategies if s != "id"]
    for layers in layer_choices:
        check_train_params(db, {"dataset": dataset, "features": features if feature_strats else None,
                                "strategy": feature_strats[0] if feature_strats else "id", "layers": layers})
    params = {"dataset": dataset, "features": features if feature_strats else None, "strategies": list(strategies),
              "layers": list(layer_choices), "seeds": [int(s) for s in seeds], "study": study.strip(),
              "settings": settings}
    return enqueue(db, "sweep", params, group=study.strip())


def job_label(job) -> str:
    p = job.params or {}
    if job.kind == "train":
        what = f"{p.get('strategy')} on {p.get('dataset')}"
        if p.get("features"):
            what += f" · {p.get('features')} layers {p.get('layers') or 'all'}"
        return what + f" · seed {p.get('seed', 42)}"
    if job.kind == "sweep":
        return (f"study {p.get('study')}: {', '.join(p.get('strategies', []))} × layers "
                f"{'; '.join(p.get('layers') or ['all'])} × seeds {', '.join(str(s) for s in p.get('seeds') or [])}")
    if job.kind == "extract":
        return f"{p.get('backbone')} → {p.get('name')} on {p.get('dataset')}"
    return "build the demo dataset"


def jobs_frame(jobs: list) -> pd.DataFrame:
    rows = [{"id": j.id, "kind": j.kind, "what": job_label(j), "status": j.status, "progress": float(j.progress or 0),
             "step": j.step or "", "ETA": format_seconds(j.eta_seconds) if j.status == "running" else "",
             "study": j.group_name or "", "run": (j.result or {}).get("run_id"), "error": j.error or "",
             "created": j.created_at} for j in jobs]
    return pd.DataFrame(rows, columns=["id", "kind", "what", "status", "progress", "step", "ETA", "study", "run",
                                       "error", "created"])


def job_curves(db: Database, run_id: int) -> pd.DataFrame:
    """Per-epoch curves of a run: columns epoch, series ("train loss", "val NDCG@10", ...), value."""
    m = run_metrics(db, [int(run_id)])
    keep = ((m["split"] == "train") & (m["name"] == "loss")) | ((m["split"] == "val") & m["name"].isin(
        ["NDCG@10", "HR@10"]))
    m = m[keep]
    return pd.DataFrame({"epoch": m["epoch"].astype(int), "series": m["split"] + " " + m["name"],
                         "value": m["value"].astype(float)}).reset_index(drop=True)


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"


# ------------------------------------------------------------------------------------- extraction

def backbone_families() -> tuple[list[dict], str | None]:
    """The backbone registry as plain dicts, or an explanation when it cannot be loaded."""
    try:
        from dff_core.backbones import list_families
    except Exception as exc:  # the registry is optional for every other page
        return [], f"the backbone registry (dff_core.backbones) is not available: {type(exc).__name__}: {exc}"
    try:
        families = list(list_families())
    except Exception as exc:
        return [], f"listing backbone families failed: {type(exc).__name__}: {exc}"
    out = []
    for fam in families:
        d = dict(fam) if isinstance(fam, dict) else {k: getattr(fam, k) for k in dir(fam) if not k.startswith("_")
                                                       and not callable(getattr(fam, k))}
        d.setdefault("name", str(fam))
        d.setdefault("description", "")
        d["inputs"] = list(d.get("inputs") or [])
        d["poolings"] = list(d.get("poolings") or [])
        d.setdefault("default_inputs", d["inputs"])
        d.setdefault("default_pooling", d["poolings"][0] if d["poolings"] else None)
        d.setdefault("can_caption", False)
        out.append(d)
    return out, None


def backbone_spec(family: str, checkpoint: str | None) -> str:
    checkpoint = (checkpoint or "").strip()
    return f"{family}:{checkpoint}" if checkpoint else family


def feature_bytes(items: int, layers: int, dim: int, bytes_per_value: int = 2) -> int:
    return int(items) * int(layers) * int(dim) * int(bytes_per_value)


def extraction_estimate(items: int, layers: int, dim: int, family: str, inputs: list[str], num_frames: int,
                        items_per_s: float | None = None, dtype: str = "float16") -> dict:
    """Disk = items × layers × dim × bytes per value; time from a per-family items/s figure (an estimate)."""
    rate = items_per_s or ITEMS_PER_S.get(family, DEFAULT_ITEMS_PER_S)
    if "frames" in inputs and num_frames > 1:
        rate = rate / (1 + FRAME_COST * (num_frames - 1))
    size = feature_bytes(items, layers, dim, 2 if dtype == "float16" else 4)
    return {"bytes": size, "seconds": items / rate if rate > 0 else float("inf"), "items_per_s": rate}


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def extract_job_params(db: Database, dataset: str, backbone: str, name: str, inputs: list[str], num_frames: int,
                       pooling: str | None, batch_size: int = 8, dtype: str = "float16", caption: bool = False,
                       frame_size: int = 224, text_encoder: str = "minilm") -> dict:
    """Validated parameters for an extract job (the same checks as ``python -m dff_core submit extract``)."""
    from dff_core.cli_extract import extract_params

    if not name or not name.strip():
        raise ValueError("name the feature set")
    args = argparse.Namespace(dataset=dataset, backbone=backbone, name=name.strip(), inputs=",".join(inputs) or None,
                              frames=int(num_frames), frame_size=int(frame_size), pooling=pooling,
                              batch_size=int(batch_size), dtype=dtype, caption=bool(caption),
                              text_encoder=text_encoder)
    return extract_params(db, args)


def enqueue_extract(db: Database, **kwargs) -> int:
    from jobs.queue import enqueue

    params = extract_job_params(db, **kwargs)
    existing = [fs for fs in list_feature_sets(db, params["dataset"]) if fs.name == params["name"]]
    if existing and existing[0].status in USABLE_FEATURE_STATUS:
        raise ValueError(f"feature set {params['name']!r} already exists for {params['dataset']!r}; pick another name")
    return enqueue(db, "extract", params)


# ------------------------------------------------------------------------------------------ demo study

def demo_study_jobs(db: Database, epochs: int = 30) -> list[tuple[str, dict]]:
    """What "run the demo study" queues, skipping what is already stored or queued.

    The worker runs jobs in id order, one at a time: demo data, then the smollm2 extraction, then a sweep
    whose train jobs are created only when the sweep itself runs, i.e. after the feature set exists.
    """
    from dff_core.data.load import DEMO_NAME
    from jobs.queue import ACTIVE, list_jobs

    active = [j for j in list_jobs(db) if j.status in ACTIVE]
    plan: list[tuple[str, dict]] = []
    try:
        get_dataset(db, DEMO_NAME)
        have_demo = True
    except NotFound:
        have_demo = False
    if not have_demo and not any(j.kind == "demo" for j in active):
        plan.append(("demo", {}))
    fs = None
    if have_demo:
        fs = next((f for f in list_feature_sets(db, DEMO_NAME) if f.name == DEMO_FEATURES), None)
    extracting = any(j.kind == "extract" and (j.params or {}).get("name") == DEMO_FEATURES for j in active)
    if (fs is None or fs.status not in USABLE_FEATURE_STATUS) and not extracting:
        plan.append(("extract", _demo_extract_params()))
    if not any(j.kind == "sweep" and j.group_name == DEMO_STUDY for j in active) and not list_runs(db, study=DEMO_STUDY):
        plan.append(("sweep", {"dataset": DEMO_NAME, "features": DEMO_FEATURES, "strategies": list(MAIN_STRATEGIES),
                               "layers": ["all"], "seeds": [1], "study": DEMO_STUDY,
                               "settings": {"epochs": epochs, "patience": 5}}))
    return plan


def _demo_extract_params() -> dict:
    inputs, pooling = ["title"], "all_mean"
    families, _ = backbone_families()
    fam = next((f for f in families if f["name"] == DEMO_BACKBONE), None)
    if fam is not None:
        inputs = list(fam.get("default_inputs") or inputs)
        pooling = fam.get("default_pooling") or pooling
    return {"dataset": "demo", "backbone": DEMO_BACKBONE, "name": DEMO_FEATURES, "inputs": inputs, "num_frames": 8,
            "frame_size": 224, "pooling": pooling, "batch_size": 8, "dtype": "float16", "caption": False,
            "text_encoder": "minilm"}


def enqueue_demo_study(db: Database, epochs: int = 30) -> list[int]:
    from jobs.queue import enqueue

    ids = []
    for kind, params in demo_study_jobs(db, epochs):
        ids.append(enqueue(db, kind, params, group=DEMO_STUDY if kind != "demo" else None))
    return ids
