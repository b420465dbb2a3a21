"""Glue between the science (``dff_core``) and ``storage``: the units of work that the CLI, the job
workers and the dashboard all run, so the three never disagree about what a "training run" is."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from storage import Database
from storage.owners import NotOwner, Owner, still_owns
from jobs.resume import BEFORE_IT_EXISTED
from jobs.worker import side_by_side_now
from dff_core.layers import parse_layers
from dff_core.metric_names import METRICS
from dff_core.neighbours.runs import item_vectors
from jobs.neighbours.models import save_run_vectors
from jobs.reads import load_split, load_training_features
from storage.datasets import get_dataset
from storage.features import FeatureSetRecord, get_feature_set, read_features
from storage.runs import (RunRecord, create_run, finish_run, get_run, log_metrics, restart_run,
                          checkpoint_dir as run_checkpoint_dir)

Progress = Callable[[float, str], None]


def run_training(db: Database, dataset: str | int, strategy: str, *, features: str | int | None = None,
                 layers: str | list[int] | None = None, settings: dict | None = None, seed: int = 42,
                 study: str | None = None, job_id: int | None = None, run_id: int | None = None,
                 progress: Progress | None = None, log: Callable[[str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_run: Callable[[int], None] | None = None, owner: Owner | None = None) -> RunRecord:
    """Train and evaluate one SASRec run; every epoch's metrics go to storage as they happen.

    ``run_id`` continues an existing run from its last checkpoint (after a crash or a cancel). ``owner`` (a
    job runner's claim) fences every write to the run: once the job is no longer this runner's, the next
    write raises ``NotOwner`` and the run is left to its new owner, untouched."""
    from jobs.popularity import cached_popularity
    from jobs.run_settings import plan_run
    from dff_core.models.item_encoders import FEATURE_STRATEGIES
    from dff_core.endings import CAPPED_IMPROVING
    from dff_core.train.trainer import train

    ds = get_dataset(db, dataset)
    stored = get_run(db, run_id).config if run_id is not None else None
    plan = plan_run(db, ds, strategy, features=features, layers=layers, settings=settings, seed=seed, stored=stored)
    cfg, fs, layer_ids = plan.cfg, plan.fs, plan.layer_ids
    feats, missing = None, 0
    if fs is not None and strategy in FEATURE_STRATEGIES:
        feats, layer_ids, missing = load_training_features(db, ds.id, fs, layer_ids)
    split = load_split(db, ds.id)

    config = plan.config(missing, engine="local")
    if run_id is None:
        run = create_run(db, ds.id, strategy, config, feature_set_id=fs.id if fs else None, layers=layer_ids,
                         seed=seed, study=study, job_id=job_id, owner=owner)
    else:  # the record says what this attempt trains with (settings it lacked, today's device)
        run = restart_run(db, run_id, config, owner=owner)
    if on_run:
        on_run(run.id)
    checkpoint_dir = run_checkpoint_dir(db, run.id)
    if run_id is None and checkpoint_dir.exists():
        # a new run never resumes: a folder under its id is left over from a deleted database of the same name
        shutil.rmtree(checkpoint_dir)
    if log and missing:
        log(f"warning: {missing} items have no stored vectors (failed extraction); they use zero features")

    # With a generous cap, runs end by early stopping long before it: progress (and the ETA drawn from it) is
    # measured against the earliest epoch the run can stop at (best epoch + patience evaluations), never falling.
    seen = {"best": -float("inf"), "best_epoch": 0, "frac": 0.0}

    def fraction(epochs_done: float) -> float:
        horizon = cfg.epochs
        if cfg.patience > 0:
            horizon = min(cfg.epochs, max(seen["best_epoch"] + cfg.patience * cfg.eval_every, int(epochs_done) + 1))
        seen["frac"] = max(seen["frac"], min(1.0, epochs_done / horizon))
        return seen["frac"]

    def on_event(event: dict) -> None:
        if event["type"] == "step":
            frac = fraction((event["epoch"] - 1) + event["step"] / max(1, event["steps"]))
            if progress:
                progress(frac, f"epoch {event['epoch']} step {event['step']}/{event['steps']} "
                               f"loss {event['loss']:.4f}")
        elif event["type"] == "epoch":
            epoch = event["epoch"]
            store_epoch(db, run.id, event, layer_ids, owner=owner)
            if log and not event.get("replayed"):
                val = event.get("val") or {}
                log(f"epoch {epoch}: loss {event['loss']:.4f}, val NDCG@10 {val.get('NDCG@10', float('nan')):.4f}, "
                    f"{event['seconds']:.1f} s")
            if (event.get("val") or {}).get(cfg.metric, -float("inf")) > seen["best"]:
                seen.update(best=event["val"][cfg.metric], best_epoch=epoch)
            if progress:
                progress(fraction(epoch), f"epoch {epoch} done (best {seen['best_epoch']}, cap {cfg.epochs})")

    start = time.perf_counter()
    try:
        result = train(split, cfg, features=feats, checkpoint_dir=checkpoint_dir, callback=on_event,
                       should_stop=should_stop, may_write=lambda: still_owns(db, owner),
                       before_it_existed=BEFORE_IT_EXISTED)
    except NotOwner:
        raise  # the run is someone else's now: not a word more about it
    except Exception as exc:
        finish_run(db, run.id, "failed", error=f"{type(exc).__name__}: {exc}", owner=owner)
        raise
    if result.cancelled:
        finish_run(db, run.id, "cancelled", epochs_run=result.epochs_run, seconds=result.seconds,
                   best_epoch=result.best_epoch or None, ending=result.ending, owner=owner)
        return get_run(db, run.id)
    store_result(db, run.id, result.to_dict(), layer_ids, cached_popularity(db, ds.id, split),
                 time.perf_counter() - start, owner=owner)
    if result.model is not None:  # Explore reads a run's item vectors without loading torch or the model
        save_run_vectors(db, run.id, item_vectors(result.model))
    if log and result.ending == CAPPED_IMPROVING:
        log(capped_warning(run.id, result.epochs_run, result.best_epoch))
    return get_run(db, run.id)


def store_epoch(db: Database, run_id: int, event: dict, layer_ids: list[int] | None, *,
                owner: Owner | None = None) -> None:
    """One epoch event (or history record) of ``train`` into the metrics table: train loss and seconds,
    validation metrics, DFF layer weights keyed by the stored layer number. Upserts: replaying is harmless."""
    epoch = event["epoch"]
    train_values = {"loss": event["loss"], "seconds": event["seconds"], "gate_mean": event.get("gate_mean")}
    log_metrics(db, run_id, epoch, "train", train_values, owner=owner)
    if event.get("val"):
        log_metrics(db, run_id, epoch, "val", {k: event["val"][k] for k in METRICS if k in event["val"]}, owner=owner)
    weights = event.get("layer_weights")
    if weights:
        log_metrics(db, run_id, epoch, "layer_weight",
                    {str(layer_ids[int(k)] if layer_ids else k): w for k, w in weights.items()}, owner=owner)


def store_result(db: Database, run_id: int, result: dict, layer_ids: list[int] | None, popularity_test: dict,
                 wall_seconds: float, *, owner: Owner | None = None) -> None:
    """A finished ``train`` result (``TrainResult.to_dict()``) as the run's test metrics and summary; status done.

    Shared by the local engine and the Ray sweep driver, so both store exactly the same fields."""
    weights = ({str(layer_ids[int(k)] if layer_ids else k): float(w) for k, w in result["layer_weights"].items()}
               if result.get("layer_weights") else None)
    log_metrics(db, run_id, result["best_epoch"], "test", {k: result["test"][k] for k in METRICS}, owner=owner)
    summary = {
        "val": {k: result["val"][k] for k in METRICS}, "test": {k: result["test"][k] for k in METRICS},
        "val_buckets": result["val_buckets"], "test_buckets": result["test_buckets"], "layer_weights": weights,
        "gate_mean": result["gate_mean"], "stopped_early": result["stopped_early"],
        "popularity_test": dict(popularity_test), "wall_seconds": wall_seconds,
        "side_by_side": side_by_side_now(),
    }
    finish_run(db, run_id, "done", result=summary, best_epoch=result["best_epoch"], epochs_run=result["epochs_run"],
               seconds=result["seconds"], seconds_per_epoch=result["seconds_per_epoch"], ending=result.get("ending"),
               owner=owner)


def capped_warning(run_id: int, epochs: int, best_epoch: int) -> str:
    """The line a run that hit its epoch cap while still improving gets in its log (and on the CLI)."""
    return (f"warning: run {run_id} hit the epoch cap ({epochs}) while still improving (best epoch {best_epoch}): "
            "its metrics are of an under-trained model and it cannot decide a comparison; train again with a "
            "higher --epochs to reach early stopping")


def export_features_npz(db: Database, name: str, npz_path: str | Path, dataset: str | int | None = None,
                        layers: str | list[int] | None = None) -> dict:
    """Write a stored feature set as an npz: ``item_ids`` [n] (str), ``features`` [n, layers, dim] float32 and
    ``layers`` [layers] (the stored layer numbers) — the inverse of :func:`import_features_npz`, so the
    vectors can go to other models. Items without vectors (failed, not yet extracted) are left out; rows follow
    the dataset's item order. The file is written whole or not at all. Returns a summary."""
    import os
    import tempfile

    from storage.datasets import load_items
    from storage.features import read_features

    fs = get_feature_set(db, name, dataset=dataset)
    chosen = parse_layers(layers, fs.num_layers)
    chosen = list(range(fs.num_layers)) if chosen is None else chosen
    path = Path(npz_path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: the output file must end in .npz")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist; create it or write the npz elsewhere")
    feats, mask = read_features(db, fs, chosen, dtype=np.float32)
    if not mask.any():
        raise ValueError(f"feature set {fs.name!r} has no stored vectors yet ({fs.status}); nothing to export")
    ids = load_items(db, fs.dataset_id)["item_id"].astype(str).to_numpy()
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, item_ids=ids[mask].astype(str), features=np.ascontiguousarray(feats[mask], dtype=np.float32),
                     layers=np.asarray(chosen, dtype=np.int64))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"name": fs.name, "items": int(mask.sum()), "layers": chosen, "dim": fs.dim, "path": str(path),
            "missing": int((~mask).sum())}


def import_features_npz(db: Database, name: str, dataset: str | int, npz_path: str | Path,
                        backbone: str = "imported", dtype: str | None = None,
                        storage: str = "duckdb") -> FeatureSetRecord:
    """Store features computed elsewhere: an npz with ``item_ids`` [n] and ``features`` [n, layers, dim]
    (or [n, dim]). Ids are the dataset's external item ids; ids the dataset does not have (a catalogue-wide
    file imported into a subset) are skipped and counted in the set's stats (``skipped_unknown_items``),
    and the file is refused only when none match. Everything is checked before anything is stored. The
    storage type is float16 only when the values survive it (``storage.features.choose_dtype``); the reason is
    kept in the stats (``dtype_reason``).

    Never stuck: an import that was killed part-way (its set left ``running`` by a writer that is gone, or
    ``interrupted``/``failed``) is resumed by importing again under the same name — items already stored are
    skipped, the rest written, the set finished. An error on the way removes the set again."""
    from storage.datasets import load_items
    from storage.features import (choose_dtype, create_feature_set, delete_feature_set, finish_feature_set,
                                  stored_items, unfinished_import, write_vectors)

    path = Path(npz_path)
    ids, feats = _read_features_npz(path)
    ds = get_dataset(db, dataset)
    items = load_items(db, ds.id)
    index = dict(zip(items["item_id"].astype(str), items["idx"]))
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = str(uniq[counts > 1][0])
        raise ValueError(f"{path.name}: item id {dup} appears {int(counts[counts > 1][0])} times "
                         f"({int((counts > 1).sum())} ids repeat); each item needs exactly one row")
    known = np.array([i in index for i in ids], dtype=bool)
    if not known.any():
        raise ValueError(f"{path.name}: all {len(ids)} of its item ids are not in dataset {ds.name!r} "
                         f"(e.g. {', '.join(map(str, ids[:3]))}); none match — is it the right dataset?")
    skipped = int((~known).sum())
    ids, feats = ids[known], feats[known]
    reason = f"{dtype} requested"
    prior = unfinished_import(db, ds.id, name)
    if prior is not None and dtype is None:
        dtype, reason = prior.dtype, prior.stats.get("dtype_reason") or f"{prior.dtype}, as the import started"
    elif dtype is None:
        dtype, reason = choose_dtype(feats)
    fs = create_feature_set(db, ds.id, name, backbone, feats.shape[1], feats.shape[2], dtype=dtype,
                            params={"source": str(path)}, storage=storage, exist_ok=prior is not None)
    try:
        idx = np.array([index[i] for i in ids])
        if prior is not None:  # resume: what the killed import stored stays, the rest follows
            todo = ~np.isin(idx, np.fromiter(stored_items(db, fs), dtype=np.int64))
            idx, feats = idx[todo], feats[todo]
        finish_feature_set(db, fs, "running", {"dtype_reason": reason})
        for s in range(0, len(idx), 2000):
            write_vectors(db, fs, idx[s:s + 2000], feats[s:s + 2000])
    except Exception:
        delete_feature_set(db, fs)
        raise
    status = "complete" if len(ids) == len(items) else "partial"
    finish_feature_set(db, fs, status, {"items": int(len(ids)), "missing_items": int(len(items) - len(ids)),
                                        "skipped_unknown_items": skipped, "dtype_reason": reason})
    return get_feature_set(db, fs.id)


class BlockWriter:
    """Collects ``(idx, feats)`` batches and writes them in blocks of ``max_items`` or every ``max_seconds``,
    whichever comes first. A killed process loses at most the unwritten block, which resume re-extracts."""

    def __init__(self, write: Callable[[list[int], np.ndarray], None], max_items: int = 256,
                 max_seconds: float = 2.0):
        self.write, self.max_items, self.max_seconds = write, max_items, max_seconds
        self.idx: list[int] = []
        self.feats: list[np.ndarray] = []
        self.last = time.perf_counter()

    def add(self, idx: list[int], feats: np.ndarray) -> None:
        self.idx.extend(int(i) for i in idx)
        self.feats.append(np.asarray(feats, dtype=np.float32))
        if len(self.idx) >= self.max_items or time.perf_counter() - self.last >= self.max_seconds:
            self.flush()

    def flush(self) -> None:
        if self.idx:
            idx, feats = self.idx, np.concatenate(self.feats)
            self.idx, self.feats = [], []
            self.write(idx, feats)
        self.last = time.perf_counter()


def _same_precision(fs: FeatureSetRecord, ran: dict) -> None:
    """A resumed feature set continues in the precision it was started in: one set, one way of computing."""
    before = {k: (fs.params or {}).get(k) for k in ("compute_dtype", "quantize")}
    now = {k: ran[k] for k in before}
    if before["compute_dtype"] and before != now:
        was = before["compute_dtype"] + (" + int8" if before["quantize"] == "int8" else "")
        raise ValueError(f"feature set {fs.name!r} was started in {was}; resume it with --compute-dtype "
                         f"{before['compute_dtype']} --quantize {before['quantize'] or 'none'}, or pick another --name")


def _same_batch(fs: FeatureSetRecord, batch_size: int) -> None:
    """A resumed feature set continues with the batch size it was started with: vectors computed in reduced
    precision depend on the batch (SmolLM2 in bfloat16: up to 1.1 % between batch sizes), so one set never mixes two."""
    before = (fs.params or {}).get("batch_size")
    if before and int(before) != int(batch_size):
        raise ValueError(f"feature set {fs.name!r} was started with --batch-size {before}; resume it with "
                         f"--batch-size {before} (vectors depend on the batch), or pick another --name")


def _read_features_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``item_ids`` [n] (str) and ``features`` [n, layers, dim] from a user's file, or one clear ValueError."""
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x93NUMPY"):
        raise ValueError(f"{path.name}: a single .npy array, not an .npz archive; save both arrays with "
                         "np.savez(file, item_ids=..., features=...)")
    if not head.startswith(b"PK"):
        kind = "empty" if not head else ("text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "binary")
        raise ValueError(f"{path.name}: not an .npz archive (the file is {kind}); save with "
                         "np.savez(file, item_ids=..., features=...)")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{path.name}: not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    with npz:
        for key in ("item_ids", "features"):
            if key not in npz.files:
                raise ValueError(f"{path.name}: missing array {key!r} (found: {', '.join(npz.files) or 'none'}); "
                                 "save with np.savez(file, item_ids=..., features=...)")
        try:
            ids = np.asarray(npz["item_ids"])
            feats = np.asarray(npz["features"])
        except ValueError:  # object arrays need pickle, which we never load from user files
            raise ValueError(f"{path.name}: arrays must be plain numbers or strings, not Python objects; save with "
                             "item_ids=np.asarray(ids, dtype=str)") from None
        except Exception as exc:  # a damaged member
            raise ValueError(f"{path.name}: an array cannot be read ({type(exc).__name__}: {exc})") from None
    if ids.ndim != 1 or feats.ndim == 0:
        raise ValueError(f"{path.name}: item_ids must be a list [n] and features [n, layers, dim]; got shapes "
                         f"{list(ids.shape)} and {list(feats.shape)}")
    ids = ids.astype(str)
    if feats.ndim == 2:
        feats = feats[:, None, :]
    if feats.ndim != 3 or len(feats) != len(ids):
        raise ValueError(f"{path.name}: features must be [n, layers, dim] with n = len(item_ids) = {len(ids)}; "
                         f"got shape {list(feats.shape)}")
    if feats.size == 0:
        raise ValueError(f"{path.name}: features are empty (shape {list(feats.shape)}); need at least one item, "
                         "one layer and one dimension")
    if not np.issubdtype(feats.dtype, np.floating) or not np.isfinite(feats).all():
        raise ValueError(f"{path.name}: features must be finite floating-point numbers")
    return ids, feats


def run_extraction(db: Database, dataset: str | int, backbone: str, name: str, *,
                   inputs: list[str] | tuple[str, ...] = ("frames", "title"), num_frames: int = 8,
                   frame_size: int = 224, pooling: str = "video_mean", batch_size: int = 8,
                   dtype: str = "float16", caption: bool = False, text_encoder: str = "minilm",
                   storage: str = "duckdb", engine: str = "local", address: str | None = None,
                   device: str = "auto", compute_dtype: str = "auto", quantize: str = "none",
                   progress: Progress | None = None, log: Callable[[str], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, owner: Owner | None = None) -> FeatureSetRecord:
    """Extract a feature set into storage, resumably: items already stored are skipped, each batch is
    written as it finishes, and a failing item is recorded with its reason while the rest go on.

    ``caption=True`` takes the caption route: the LVLM writes a caption per item and ``text_encoder``
    embeds it (a one-layer feature set of kind ``caption``). ``storage="parquet"`` keeps the vectors in
    Parquet shards beside the database; ``engine="ray"`` runs the model replicas on a Ray cluster
    (``address``; a local instance when None) through ``dff_core.extraction.ray_engine``.

    ``device`` (auto | cpu | cuda[:N]), ``compute_dtype`` (auto | float32 | bfloat16) and ``quantize``
    (none | int8) say where and how the backbone computes; the resolved choice is stored in the feature
    set's params (``device``, ``compute_dtype``, ``quantize``). ``dtype`` is how the vectors are stored.
    ``owner`` (a job runner's claim) fences every write to the feature set, and ties the set's status to
    the job's (``storage.queue``)."""
    from dff_core.backbones import family_class, load_backbone, parse_spec, resolve_precision
    from dff_core.devices import device_name, resolve_device
    from dff_core.extraction import ExtractItem, caption_and_embed, extract
    from dff_core.data.media import resolve_media
    from storage.datasets import load_items
    from storage.features import (create_feature_set, finish_feature_set, record_failure, store_captions,
                                  stored_items, write_vectors)

    ds = get_dataset(db, dataset)
    items = load_items(db, ds.id)
    root = Path(ds.root) if ds.root else None

    def media(path) -> str | None:
        # confined to the media folder; a missing file stays a path so the item fails with its reason
        return resolve_media(root, path, must_exist=False)

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

        device = (device or "auto").strip().lower()
        if device not in ("auto", "cpu"):
            raise ValueError(f"--engine ray places replicas on the cluster's GPUs itself; use --device auto "
                             f"(or cpu), not {device!r}")
        model = ray_engine.ray_backbone(backbone, address, dtype=dtype, cpu_only=device == "cpu",
                                        compute_dtype=compute_dtype, quantize=quantize)
        extract = ray_engine.extract
        ran = {"device": "ray-gpu" if model.gpus_per_replica > 0 else "ray-cpu", "compute_dtype": compute_dtype,
               "quantize": quantize}
    else:
        where = device_name(resolve_device(device))
        if caption and where == "cpu" and (compute_dtype or "auto") == "auto":
            compute_dtype = "float32"  # bfloat16 was measured on hidden states, not on greedy captions
        compute_dtype, quantize = resolve_precision(family_class(parse_spec(backbone)[0]), where, compute_dtype,
                                                    quantize)
        model = load_backbone(backbone, device=where, dtype=compute_dtype, quantize=quantize)
        ran = {"device": where, "compute_dtype": compute_dtype, "quantize": quantize}
    if log:
        log(f"computing on {ran['device']} in {ran['compute_dtype']}"
            + (" with int8 linear layers" if ran["quantize"] == "int8" else ""))
    params = {"num_frames": num_frames, "frame_size": frame_size, "batch_size": batch_size, **ran}
    failed = 0

    def on_failure(idx: int, reason: str) -> None:
        nonlocal failed
        failed += 1
        record_failure(db, fs, idx, reason, owner=owner)
        if log:
            log(f"item {items.at[idx, 'item_id']}: {reason}")

    def on_progress(done: int, total: int, info: dict | None = None) -> None:
        if progress:
            rate = (info or {}).get("items_per_second")
            progress(done / max(1, total), f"{done}/{total} items" + (f", {rate:.1f} items/s" if rate else ""))

    if caption:
        encoder = load_backbone(text_encoder, device=ran["device"])
        fs = create_feature_set(db, ds.id, name, f"{backbone} -> {text_encoder}", 1, encoder.dim, kind="caption",
                                inputs=list(inputs), pooling="sentence", params={**params, "text_encoder": text_encoder},
                                dtype=dtype, exist_ok=True, storage=storage, owner=owner)
        _same_precision(fs, ran)
        _same_batch(fs, batch_size)
        skip = stored_items(db, fs)

        def on_batch_caption(idx: list[int], feats: np.ndarray, texts: list[str]) -> None:
            write_vectors(db, fs, idx, feats, owner=owner)
            store_captions(db, fs, idx, texts, owner=owner)

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
                                storage=storage, owner=owner)
        _same_precision(fs, ran)
        _same_batch(fs, batch_size)
        skip = stored_items(db, fs)
        if skip and log:
            log(f"resuming: {len(skip)} items already stored are skipped")
        # the local engine hands over a few items per batch; writing each batch opens the database once
        # (measured: 500 SmolLM2 items in batches of 8 took 11.3 s to store, in blocks of 256 2.5 s), so
        # vectors are written in blocks (the Ray engine's driver does the same)
        def store(idx, feats) -> None:
            write_vectors(db, fs, idx, feats, owner=owner)

        writer = BlockWriter(store) if engine == "local" else None
        try:
            summary = extract(model, work, inputs=tuple(inputs), num_frames=num_frames, frame_size=frame_size,
                              pooling=pooling, batch_size=batch_size, skip=skip,
                              on_batch=writer.add if writer else store,
                              on_failure=on_failure, progress=on_progress, should_stop=should_stop)
        finally:
            if writer:
                writer.flush()  # what finished is kept, also on cancel or an error
    stored = len(stored_items(db, fs))
    status = ("running" if getattr(summary, "cancelled", False) else
              "complete" if stored == len(work) else "partial" if stored else "failed")
    stats = {"items": stored, "failed": len(work) - stored, "seconds": getattr(summary, "seconds", None),
             "cpu_seconds": getattr(summary, "cpu_seconds", None),
             "items_per_second": getattr(summary, "items_per_second", None),
             "bytes_per_item": fs.num_layers * fs.dim * np.dtype(fs.dtype).itemsize}
    finish_feature_set(db, fs, "cancelled" if status == "running" else status, stats, owner=owner)
    if log:
        log(f"feature set {name!r}: {stored}/{len(work)} items stored, {len(work) - stored} without vectors")
    return get_feature_set(db, fs.id)
