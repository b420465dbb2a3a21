"""Glue between the compute (``dff_core``) and ``storage``: the units of work that the CLI, the job
workers and the dashboard all run, so the three never disagree about what a "training run" is."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from storage import Database
from storage.datasets import get_dataset, load_split
from storage.features import FeatureSetRecord, get_feature_set, read_features
from storage.runs import (RunRecord, create_run, finish_run, get_run, log_metrics, set_run_status,
                          checkpoint_dir as run_checkpoint_dir)

Progress = Callable[[float, str], None]
METRIC_NAMES = ("HR@10", "HR@20", "NDCG@10", "NDCG@20", "MRR")


def parse_layers(spec: str | list[int] | None, num_layers: int) -> list[int] | None:
    """``all`` | ``A-B`` (inclusive) | ``i,j,k`` | a list; negative indices count from the end.

    Returns sorted unique layer indices into the stored tensor (0 = embedding output), or None for all."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return None
    if isinstance(spec, str):
        spec = spec.strip()
        span = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", spec)
        try:
            if span:
                a, b = (int(v) + num_layers if int(v) < 0 else int(v) for v in span.groups())
                if a > b:
                    raise ValueError
                values = list(range(a, b + 1))
            else:
                values = [int(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"cannot read layers {spec!r}: use all, A-B (e.g. 8-20) or a list (e.g. 4,12,30)") from None
    else:
        values = [int(v) for v in spec]
    values = [v + num_layers if v < 0 else v for v in values]
    bad = [v for v in values if not 0 <= v < num_layers]
    if bad or not values:
        raise ValueError(f"layers {bad or values} are outside 0..{num_layers - 1} (the feature set has {num_layers} layers)")
    return sorted(set(values))


def load_training_features(db: Database, dataset_id: int, fs: FeatureSetRecord,
                           layers: list[int] | None) -> tuple[np.ndarray, list[int], int]:
    """The chosen layers of a feature set as float32 ``[items, len(layers), dim]``, checked against the
    dataset. Returns (features, layer ids, items without vectors)."""
    if fs.dataset_id != dataset_id:
        other = get_dataset(db, fs.dataset_id).name
        raise ValueError(f"feature set {fs.name!r} was extracted for dataset {other!r}, not this one; extract "
                         "features for this dataset or pick a matching feature set")
    if fs.status == "running":
        raise ValueError(f"feature set {fs.name!r} is still being extracted; wait for its job to finish")
    layer_ids = list(range(fs.num_layers)) if layers is None else layers
    feats, present = read_features(db, fs, layers=layer_ids)
    missing = int((~present).sum())
    if missing == len(present):
        raise ValueError(f"feature set {fs.name!r} has no vectors stored")
    return feats, layer_ids, missing


def run_training(db: Database, dataset: str | int, strategy: str, *, features: str | int | None = None,
                 layers: str | list[int] | None = None, settings: dict | None = None, seed: int = 42,
                 study: str | None = None, job_id: int | None = None, run_id: int | None = None,
                 progress: Progress | None = None, log: Callable[[str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_run: Callable[[int], None] | None = None) -> RunRecord:
    """Train and evaluate one SASRec run; every epoch's metrics go to storage as they happen.

    ``run_id`` continues an existing run from its last checkpoint (after a crash or a cancel)."""
    from dff_core.eval.evaluate import popularity_baseline
    from dff_core.models.item_encoders import FEATURE_STRATEGIES
    from dff_core.train.trainer import TrainConfig, train

    ds = get_dataset(db, dataset)
    fs = None
    if strategy in FEATURE_STRATEGIES:
        if features is None:
            raise ValueError(f"strategy {strategy!r} needs a feature set (--features NAME); only 'id' trains without")
        fs = get_feature_set(db, features, dataset=ds.id if not str(features).isdigit() else None)
    elif features is not None:
        fs = get_feature_set(db, features, dataset=ds.id if not str(features).isdigit() else None)
    layer_ids = parse_layers(layers, fs.num_layers) if fs is not None else None
    from dff_core.train.defaults import with_defaults
    from dff_core.train.device import resolve_device

    cfg = TrainConfig(strategy=strategy, layers=None, seed=seed, **with_defaults(settings))
    cfg.device = resolve_device(cfg.device)  # stored resolved: the run's config says where it trained
    feats, missing = None, 0
    if fs is not None and strategy in FEATURE_STRATEGIES:
        feats, layer_ids, missing = load_training_features(db, ds.id, fs, layer_ids)
        cfg.layers = None  # the loaded tensor holds exactly the chosen layers, in order
    split = load_split(db, ds.id)

    config = {**cfg.to_dict(), "layers": layer_ids, "feature_set": fs.name if fs else None,
              "backbone": fs.backbone if fs else None, "items_without_features": missing}
    if run_id is None:
        run = create_run(db, ds.id, strategy, config, feature_set_id=fs.id if fs else None, layers=layer_ids,
                         seed=seed, study=study, job_id=job_id)
    else:
        run = get_run(db, run_id)
        set_run_status(db, run.id, "running")
    if on_run:
        on_run(run.id)
    checkpoint_dir = run_checkpoint_dir(db, run.id)
    if run_id is None and checkpoint_dir.exists():
        # a new run never resumes: a folder under its id is left over from a deleted database of the same name
        shutil.rmtree(checkpoint_dir)
    if log and missing:
        log(f"warning: {missing} items have no stored vectors (failed extraction); they use zero features")

    def on_event(event: dict) -> None:
        if event["type"] == "step":
            frac = ((event["epoch"] - 1) + event["step"] / max(1, event["steps"])) / cfg.epochs
            if progress:
                progress(frac, f"epoch {event['epoch']} step {event['step']}/{event['steps']} "
                               f"loss {event['loss']:.4f}")
        elif event["type"] == "epoch":
            epoch = event["epoch"]
            train_values = {"loss": event["loss"], "seconds": event["seconds"], "gate_mean": event.get("gate_mean")}
            log_metrics(db, run.id, epoch, "train", train_values)
            if event.get("val"):
                log_metrics(db, run.id, epoch, "val", {k: event["val"][k] for k in METRIC_NAMES if k in event["val"]})
            weights = event.get("layer_weights")
            if weights:
                log_metrics(db, run.id, epoch, "layer_weight",
                            {str(layer_ids[int(k)] if layer_ids else k): w for k, w in weights.items()})
            if log and not event.get("replayed"):
                val = event.get("val") or {}
                log(f"epoch {epoch}: loss {event['loss']:.4f}, val NDCG@10 {val.get('NDCG@10', float('nan')):.4f}, "
                    f"{event['seconds']:.1f} s")
            if progress:
                progress(epoch / cfg.epochs, f"epoch {epoch} done")

    start = time.perf_counter()
    try:
        result = train(split, cfg, features=feats, checkpoint_dir=checkpoint_dir, callback=on_event,
                       should_stop=should_stop)
    except Exception as exc:
        finish_run(db, run.id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    if result.cancelled:
        finish_run(db, run.id, "cancelled", epochs_run=result.epochs_run, seconds=result.seconds)
        return get_run(db, run.id)
    weights = ({str(layer_ids[int(k)] if layer_ids else k): float(w) for k, w in result.layer_weights.items()}
               if result.layer_weights else None)
    log_metrics(db, run.id, result.best_epoch, "test", {k: result.test[k] for k in METRIC_NAMES})
    summary = {
        "val": {k: result.val[k] for k in METRIC_NAMES}, "test": {k: result.test[k] for k in METRIC_NAMES},
        "val_buckets": result.val_buckets, "test_buckets": result.test_buckets, "layer_weights": weights,
        "gate_mean": result.gate_mean, "stopped_early": result.stopped_early,
        "popularity_test": {k: v for k, v in popularity_baseline(split, "test").metrics.items()},
        "wall_seconds": time.perf_counter() - start,
    }
    finish_run(db, run.id, "done", result=summary, best_epoch=result.best_epoch, epochs_run=result.epochs_run,
               seconds=result.seconds, seconds_per_epoch=result.seconds_per_epoch)
    return get_run(db, run.id)


def import_features_npz(db: Database, name: str, dataset: str | int, npz_path: str | Path,
                        backbone: str = "imported", dtype: str | None = None,
                        storage: str = "duckdb") -> FeatureSetRecord:
    """Store features computed elsewhere: an npz with ``item_ids`` [n] and ``features`` [n, layers, dim]
    (or [n, dim]). Ids must be the dataset's external item ids; every id is checked before anything is
    stored."""
    from storage.datasets import load_items
    from storage.features import create_feature_set, delete_feature_set, finish_feature_set, write_vectors

    path = Path(npz_path)
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found: {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{path.name}: not a readable .npz file ({exc})") from exc
    for key in ("item_ids", "features"):
        if key not in npz.files:
            raise ValueError(f"{path.name}: missing array {key!r} (found: {', '.join(npz.files) or 'none'}); "
                             "save with np.savez(file, item_ids=..., features=...)")
    try:
        ids = np.asarray(npz["item_ids"]).astype(str)
        feats = np.asarray(npz["features"])
    except ValueError as exc:  # object arrays need pickle, which we never load from user files
        raise ValueError(f"{path.name}: arrays must be plain numbers or strings, not Python objects; save with "
                         "item_ids=np.asarray(ids, dtype=str)") from exc
    if feats.ndim == 2:
        feats = feats[:, None, :]
    if feats.ndim != 3 or len(feats) != len(ids):
        raise ValueError(f"{path.name}: features must be [n, layers, dim] with n = len(item_ids) = {len(ids)}; "
                         f"got shape {list(feats.shape)}")
    if not np.issubdtype(feats.dtype, np.floating) or not np.isfinite(feats).all():
        raise ValueError(f"{path.name}: features must be finite floating-point numbers")
    ds = get_dataset(db, dataset)
    items = load_items(db, ds.id)
    index = dict(zip(items["item_id"].astype(str), items["idx"]))
    unknown = [i for i in ids if i not in index]
    if unknown:
        raise ValueError(f"{path.name}: {len(unknown)} item ids are not in dataset {ds.name!r} "
                         f"(e.g. {', '.join(unknown[:3])})")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{path.name}: item id {uniq[counts > 1][0]!r} appears more than once")
    if dtype is None:
        dtype = "float32" if np.abs(feats).max() > 60000 else "float16"
    fs = create_feature_set(db, ds.id, name, backbone, feats.shape[1], feats.shape[2], dtype=dtype,
                            params={"source": str(path)}, storage=storage)
    try:
        idx = np.array([index[i] for i in ids])
        for s in range(0, len(idx), 2000):
            write_vectors(db, fs, idx[s:s + 2000], feats[s:s + 2000])
    except Exception:
        delete_feature_set(db, fs)
        raise
    status = "complete" if len(ids) == len(items) else "partial"
    finish_feature_set(db, fs, status, {"items": int(len(ids)), "missing_items": int(len(items) - len(ids))})
    return get_feature_set(db, fs.id)


def run_extraction(db: Database, dataset: str | int, backbone: str, name: str, *,
                   inputs: list[str] | tuple[str, ...] = ("frames", "title"), num_frames: int = 8,
                   frame_size: int = 224, pooling: str = "video_mean", batch_size: int = 8,
                   dtype: str = "float16", caption: bool = False, text_encoder: str = "minilm",
                   storage: str = "duckdb", engine: str = "local", address: str | None = None,
                   progress: Progress | None = None, log: Callable[[str], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> FeatureSetRecord:
    """Extract a feature set into storage, resumably: items already stored are skipped, each batch is
    written as it finishes, and a failing item is recorded with its reason while the rest go on.

    ``caption=True`` takes the caption route: the LVLM writes a caption per item and ``text_encoder``
    embeds it (a one-layer feature set of kind ``caption``). ``storage="parquet"`` keeps the vectors in
    Parquet shards beside the database; ``engine="ray"`` runs the model replicas on a Ray cluster
    (``address``; a local instance when None) through ``dff_core.extraction.ray_engine``."""
    from dff_core.backbones import load_backbone
    from dff_core.extraction import ExtractItem, caption_and_embed, extract
    from storage.datasets import load_items
    from storage.features import (create_feature_set, finish_feature_set, record_failure, store_captions,
                                  stored_items, write_vectors)

    ds = get_dataset(db, dataset)
    items = load_items(db, ds.id)
    root = Path(ds.root) if ds.root else None

    def media(path) -> str | None:
        if path is None or (isinstance(path, float) and np.isnan(path)) or not str(path):
            return None
        p = Path(str(path))
        return str(p if p.is_absolute() or root is None else root / p)

    work = [ExtractItem(idx=int(r.idx), item_id=str(r.item_id), title=r.title if isinstance(r.title, str) else None,
                        video_path=media(r.video_path), cover_path=media(r.cover_path))
            for r in items.itertuples()]
    if log:
        log(f"loading backbone {backbone}")
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be local or ray, not {engine!r}")
    if engine == "ray":
        if caption:
            raise ValueError("the caption route runs on the local engine only; leave out --engine ray")
        from dff_core.extraction import ray_engine

        model, extract = ray_engine.ray_backbone(backbone, address, dtype=dtype), ray_engine.extract
    else:
        model = load_backbone(backbone)
    params = {"num_frames": num_frames, "frame_size": frame_size, "batch_size": batch_size}
    failed = 0

    def on_failure(idx: int, reason: str) -> None:
        nonlocal failed
        failed += 1
        record_failure(db, fs, idx, reason)
        if log:
            log(f"item {items.at[idx, 'item_id']}: {reason}")

    def on_progress(done: int, total: int, info: dict | None = None) -> None:
        if progress:
            rate = (info or {}).get("items_per_second")
            progress(done / max(1, total), f"{done}/{total} items" + (f", {rate:.1f} items/s" if rate else ""))

    if caption:
        encoder = load_backbone(text_encoder)
        fs = create_feature_set(db, ds.id, name, f"{backbone} -> {text_encoder}", 1, encoder.dim, kind="caption",
                                inputs=list(inputs), pooling="sentence", params={**params, "text_encoder": text_encoder},
                                dtype=dtype, exist_ok=True, storage=storage)
        skip = stored_items(db, fs)

        def on_batch_caption(idx: list[int], feats: np.ndarray, texts: list[str]) -> None:
            write_vectors(db, fs, idx, feats)
            store_captions(db, fs, idx, texts)

        summary = caption_and_embed(model, encoder, work, inputs=tuple(inputs), num_frames=num_frames,
                                    frame_size=frame_size, batch_size=batch_size, skip=skip,
                                    on_batch=on_batch_caption, on_failure=on_failure, progress=on_progress,
                                    should_stop=should_stop)
    else:
        # a backbone whose pooling changes the layer count (minilm: "sentence" = 1 vector) says so
        num_layers = model.layers_for(pooling) if hasattr(model, "layers_for") else model.num_layers
        layer_names = (model.layer_names_for(pooling) if hasattr(model, "layer_names_for")
                       else getattr(model, "layer_names", None))
        fs = create_feature_set(db, ds.id, name, backbone, num_layers, model.dim, inputs=list(inputs),
                                pooling=pooling, params=params, dtype=dtype, layer_names=layer_names, exist_ok=True,
                                storage=storage)
        skip = stored_items(db, fs)
        if skip and log:
            log(f"resuming: {len(skip)} items already stored are skipped")
        summary = extract(model, work, inputs=tuple(inputs), num_frames=num_frames, frame_size=frame_size,
                          pooling=pooling, batch_size=batch_size, skip=skip,
                          on_batch=lambda idx, feats: write_vectors(db, fs, idx, feats),
                          on_failure=on_failure, progress=on_progress, should_stop=should_stop)
    stored = len(stored_items(db, fs))
    status = ("running" if getattr(summary, "cancelled", False) else
              "complete" if stored == len(work) else "partial" if stored else "failed")
    stats = {"items": stored, "failed": len(work) - stored, "seconds": getattr(summary, "seconds", None),
             "items_per_second": getattr(summary, "items_per_second", None),
             "bytes_per_item": fs.num_layers * fs.dim * (2 if fs.dtype == "float16" else 4)}
    finish_feature_set(db, fs, "cancelled" if status == "running" else status, stats)
    if log:
        log(f"feature set {name!r}: {stored}/{len(work)} items stored, {len(work) - stored} without vectors")
    return get_feature_set(db, fs.id)
