"""Extraction on a Ray cluster: the same features as the local engine, from a pool of model replicas.

One machine cannot extract a real catalogue (millions of videos through a 7B LVLM). With Ray Data, the
items stream through ``map_batches`` into an actor pool of model replicas — one per GPU when the cluster
has GPUs, otherwise CPU replicas — and each replica runs the local engine (``dff_core.extraction.extract``)
on its batch: decoding happens in the actors, next to the model, and a batch gives the same numbers as on
one machine. Failed items come back as rows with a reason, never as a failed job. Only the driver touches
storage: it writes each returned block of vectors (``on_batch``), records failures and reports progress,
so the DuckDB file keeps its single writer and the jobs system sees the run like a local one.

Optional dependency: ``pip install -r requirements-ray.txt``. ``python -m dff_core extract ... --engine ray
[--address ray://HEAD:10001]``; without ``--address`` a local instance is started on this machine's CPUs
(or joined, when the process already called ``ray.init``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dff_core.extraction.runner import ExtractSummary

ROOT = Path(__file__).resolve().parents[2]
MAX_CPU_REPLICAS = int(os.environ.get("DFF_RAY_CPU_REPLICAS", "2"))
WRITE_BLOCK_BYTES = 64 * 2**20  # the driver writes vectors in blocks of about this size (one shard each)
FLUSH_SECONDS = 2.0             # ... or whatever arrived within this long, so progress and resume stay fresh
FLOAT16_SAFE = 60000.0
_SHAPES: dict[tuple, dict] = {}  # (spec, gpu, precision) -> what one remote load reported (once per driver process)


class RayUnavailable(RuntimeError):
    """Ray is not installed (it is optional) or the cluster cannot be reached."""


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayUnavailable("the Ray engine needs Ray: pip install -r requirements-ray.txt "
                             "(or run without --engine ray)") from exc
    return ray


def worker_env() -> dict[str, str]:
    """Environment for Ray workers on this machine: the project importable, no hub downloads."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join ``address`` (a running cluster), or start a local instance; reuse one this process started.
    Returns True when this call started the connection (so the caller shuts it down)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": "warning"}
    try:
        if address:
            # the cluster's nodes need DFF Studio's dependencies installed; the code itself travels along. Tasks
            # and replicas run only the science (storage stays with the driver), so dff_core is all they need
            import dff_core

            ray.init(address=address, runtime_env={"py_modules": [dff_core],
                                                   "env_vars": {k: v for k, v in worker_env().items()
                                                                if k != "PYTHONPATH"}}, **quiet)
        else:
            ray.init(num_cpus=num_cpus or min(MAX_CPU_REPLICAS, os.cpu_count() or 1), include_dashboard=False,
                     runtime_env={"env_vars": worker_env()}, object_store_memory=int(512 * 2**20), **quiet)
    except ConnectionError as exc:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address!r}: {exc}; start it with "
                             "`ray start --head` or leave out --address for a local instance") from exc
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    return True


def _load(spec: str, gpu: bool, compute_dtype: str = "auto", quantize: str = "none"):
    """The backbone in this replica: on its GPU (Ray sets CUDA_VISIBLE_DEVICES, so it is cuda:0) or the CPU,
    computing as asked (``resolve_precision``)."""
    from dff_core.backbones import family_class, load_backbone, parse_spec, resolve_precision

    device = "cuda:0" if gpu else "cpu"
    dtype, quantize = resolve_precision(family_class(parse_spec(spec)[0]), device, compute_dtype, quantize)
    return load_backbone(spec, device=device, dtype=dtype, quantize=quantize)


def _shape(spec: str, gpu: bool, compute_dtype: str = "auto", quantize: str = "none") -> dict:
    model = _load(spec, gpu, compute_dtype, quantize)
    return {"num_layers": int(model.num_layers), "dim": int(model.dim),
            "layer_names": getattr(model, "layer_names", None), "family": getattr(model, "family", ""),
            "inputs": list(model.inputs), "poolings": list(model.poolings), "default_pooling": model.default_pooling,
            # a pooling may change the layer count (minilm: "sentence" is one vector)
            "layers_for": {p: int(model.layers_for(p)) if hasattr(model, "layers_for") else int(model.num_layers)
                           for p in model.poolings},
            "layer_names_for": {p: (model.layer_names_for(p) if hasattr(model, "layer_names_for")
                                    else getattr(model, "layer_names", None)) for p in model.poolings}}


@dataclass
class RayBackbone:
    """A handle on a backbone that lives in Ray actors: what storage needs to know (layers, dim) without
    loading the model in the driver."""
    spec: str
    num_layers: int
    dim: int
    layer_names: list | None
    replicas: int
    gpus_per_replica: float
    owns_ray: bool = False
    dtype: str = "float32"   # vectors travel in the feature set's dtype (float16 halves the transfer)
    family: str = ""
    inputs: tuple = ()
    poolings: tuple = ()
    default_pooling: str = "all_mean"
    by_pooling: dict = field(default_factory=dict)
    device: str = "ray"
    compute_dtype: str = "auto"   # as the user asked; each replica resolves it for its own device
    quantize: str = "none"

    def layers_for(self, pooling: str) -> int:
        return self.by_pooling.get("layers_for", {}).get(pooling, self.num_layers)

    def layer_names_for(self, pooling: str) -> list | None:
        return self.by_pooling.get("layer_names_for", {}).get(pooling, self.layer_names)

    def close(self) -> None:
        if self.owns_ray:
            _ray().shutdown()
            self.owns_ray = False


def ray_backbone(spec: str, address: str | None = None, *, replicas: int | None = None,
                 dtype: str = "float32", num_cpus: int | None = None, cpu_only: bool = False,
                 compute_dtype: str = "auto", quantize: str = "none") -> RayBackbone:
    """Connect, size the replica pool (one per GPU, else up to ``DFF_RAY_CPU_REPLICAS`` CPU replicas) and
    learn the backbone's shape from one remote load. ``cpu_only`` (``--device cpu``) ignores the cluster's
    GPUs; int8 quantisation runs on CPU replicas only."""
    ray = _ray()
    owns = connect(address, num_cpus=num_cpus)
    try:
        resources = ray.cluster_resources()
        gpus = 0 if cpu_only else int(resources.get("GPU", 0))
        if gpus and quantize == "int8":
            raise ValueError("--quantize int8 runs on CPU replicas only and this Ray cluster has GPUs; "
                             "add --device cpu or use --quantize none")
        if replicas is None:
            replicas = gpus if gpus else max(1, min(MAX_CPU_REPLICAS, int(resources.get("CPU", 1))))
        per_gpu = 1.0 if gpus else 0.0
        key = (spec, bool(gpus), compute_dtype, quantize)
        if key not in _SHAPES:
            _SHAPES[key] = ray.get(ray.remote(num_cpus=1, num_gpus=per_gpu)(_shape).remote(
                spec, bool(gpus), compute_dtype, quantize))
        shape = _SHAPES[key]
    except BaseException:
        if owns:
            ray.shutdown()
        raise
    return RayBackbone(spec=spec, num_layers=shape["num_layers"], dim=shape["dim"], layer_names=shape["layer_names"],
                       replicas=replicas, gpus_per_replica=per_gpu, owns_ray=owns, dtype=dtype,
                       family=shape["family"], inputs=tuple(shape["inputs"]), poolings=tuple(shape["poolings"]),
                       default_pooling=shape["default_pooling"],
                       by_pooling={k: shape[k] for k in ("layers_for", "layer_names_for")},
                       compute_dtype=compute_dtype, quantize=quantize)


class _Replica:
    """One model replica in a Ray actor: decodes and encodes a batch with the local engine."""

    def __init__(self, spec: str, options: dict, gpu: bool, dtype: str, compute_dtype: str = "auto",
                 quantize: str = "none"):
        self.model = _load(spec, gpu, compute_dtype, quantize)
        self.options = options
        self.dtype = dtype

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from dff_core.extraction import ExtractItem, extract

        def text(v) -> str | None:
            return None if v is None or (isinstance(v, float) and np.isnan(v)) or v == "" else str(v)

        idx = batch["idx"].astype(np.int64)
        items = [ExtractItem(idx=int(i), item_id=str(a), title=text(t), video_path=text(v), cover_path=text(c))
                 for i, a, t, v, c in zip(idx, batch["item_id"], batch["title"], batch["video_path"],
                                          batch["cover_path"])]
        pooling = self.options.get("pooling") or self.model.default_pooling
        layers = self.model.layers_for(pooling) if hasattr(self.model, "layers_for") else self.model.num_layers
        feats = np.zeros((len(items), layers, self.model.dim), dtype=np.float32)
        ok = np.zeros(len(items), dtype=bool)
        reason = np.full(len(items), "", dtype=object)
        row = {int(i): r for r, i in enumerate(idx)}

        def on_batch(got, values) -> None:
            rows = [row[int(i)] for i in got]
            feats[rows] = np.asarray(values, dtype=np.float32)
            ok[rows] = True

        def on_failure(i, why) -> None:
            reason[row[int(i)]] = str(why)

        try:
            extract(self.model, items, **self.options, skip=set(), on_batch=on_batch, on_failure=on_failure)
        except Exception as exc:  # never lose the batch's items silently: each becomes a recorded failure
            for r in np.nonzero(~ok)[0]:
                reason[r] = reason[r] or f"{type(exc).__name__}: {exc}"
        for r in np.nonzero(~ok & (reason == ""))[0]:
            reason[r] = "the extractor returned no vector for this item"
        if self.dtype == "float16" and np.abs(feats).max(initial=0.0) <= FLOAT16_SAFE:
            feats = feats.astype(np.float16)  # stored as float16 anyway: same rounding, half the transfer
        return {"idx": idx, "ok": ok, "feats": feats, "reason": reason.astype(str)}


@dataclass
class RaySummary(ExtractSummary):
    """The local engine's ``ExtractSummary``, plus the pool size. CPU time is spent in the replicas, not
    measured here (None, as stored with the feature set); decode and wait times stay 0."""
    cpu_seconds: float | None = None
    replicas: int = 0


def _column(values: Sequence) -> list[str]:
    return ["" if v is None else str(v) for v in values]


def extract(model: RayBackbone, items: Sequence, *, inputs: tuple[str, ...] = ("frames", "title"),
            num_frames: int = 8, frame_size: int = 224, pooling: str | None = None, batch_size: int = 8,
            skip: set[int] | None = None, on_batch: Callable[[list[int], np.ndarray], None] | None = None,
            on_failure: Callable[[int, str], None] | None = None,
            progress: Callable[[int, int, dict], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> RaySummary:
    """The local engine's ``extract`` contract on a Ray actor pool: ``on_batch(idx, feats)`` for stored
    vectors, ``on_failure(idx, reason)`` per failed item, ``progress(done, total, info)`` — all called in
    this (driver) process. Items in ``skip`` are not sent."""
    import pyarrow as pa

    ray = _ray()
    skip = set(skip or ())
    todo = [it for it in items if int(it.idx) not in skip]
    summary = RaySummary(total=len(todo), skipped=len(items) - len(todo), replicas=model.replicas)
    start = time.perf_counter()
    try:
        pooling = pooling or model.default_pooling
        if pooling not in model.poolings:  # configuration errors fail here, not as one failure per item
            raise ValueError(f"backbone {model.family!r} pools by {', '.join(model.poolings)}; not {pooling!r}")
        bad = [i for i in inputs if i not in model.inputs]
        if bad or not inputs:
            raise ValueError(f"backbone {model.family!r} takes {', '.join(model.inputs)}; "
                             f"not {', '.join(bad) or 'nothing'}")
        if not todo:
            return summary
        table = pa.table({"idx": pa.array([int(it.idx) for it in todo], pa.int64()),
                          "item_id": _column(it.item_id for it in todo),
                          "title": _column(it.title for it in todo),
                          "video_path": _column(it.video_path for it in todo),
                          "cover_path": _column(it.cover_path for it in todo)})
        item_bytes = model.layers_for(pooling) * model.dim * np.dtype(model.dtype).itemsize
        write_rows = int(max(batch_size, min(4096, WRITE_BLOCK_BYTES // max(1, item_bytes))))
        # input blocks: enough that every replica has work queued (4 each), small enough that one block's
        # vectors stay around one write block (a retried or last block is short), at least one model batch
        block = max(batch_size, min(-(-len(todo) // (4 * model.replicas)), write_rows, 1024))
        blocks = [table.slice(s, block) for s in range(0, len(todo), block)]
        options = {"inputs": tuple(inputs), "num_frames": num_frames, "frame_size": frame_size,
                   "pooling": pooling, "batch_size": batch_size}
        out = ray.data.from_arrow(blocks).map_batches(
            _Replica, batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=model.replicas),
            fn_constructor_kwargs={"spec": model.spec, "options": options, "gpu": model.gpus_per_replica > 0,
                                   "dtype": model.dtype, "compute_dtype": model.compute_dtype,
                                   "quantize": model.quantize},
            num_cpus=1, num_gpus=model.gpus_per_replica)
        done = 0
        pending: list[dict] = []
        last_flush = time.perf_counter()

        def flush() -> None:
            nonlocal done, last_flush
            batch = {k: np.concatenate([b[k] for b in pending]) for k in ("idx", "ok", "feats", "reason")}
            pending.clear()
            last_flush = time.perf_counter()
            ok = batch["ok"].astype(bool)
            if ok.any() and on_batch:
                on_batch([int(i) for i in batch["idx"][ok]], batch["feats"][ok])
            for i, why in zip(batch["idx"][~ok], batch["reason"][~ok]):
                summary.failures[int(i)] = str(why)
                if on_failure:
                    on_failure(int(i), str(why))
            summary.done += int(ok.sum())
            summary.failed += int((~ok).sum())
            done += len(ok)
            if progress:
                elapsed = time.perf_counter() - start
                rate = summary.done / max(elapsed, 1e-9)
                progress(done, summary.total, {"items_per_second": rate, "done": summary.done,
                                               "failed": summary.failed, "elapsed": elapsed,
                                               "eta_seconds": (summary.total - done) / rate if rate > 0 else None})

        # blocks arrive as replicas finish them; the driver writes ~64 MB at a time, or every FLUSH_SECONDS
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            pending.append(batch)
            stop = bool(should_stop and should_stop())  # polled per arriving block, like the local engine per batch
            if (stop or sum(len(b["idx"]) for b in pending) >= write_rows
                    or time.perf_counter() - last_flush >= FLUSH_SECONDS):
                flush()  # what the replicas finished is kept, also on cancel
            if stop:
                summary.cancelled = True
                break
        if pending:
            flush()
        return summary
    finally:
        summary.seconds = time.perf_counter() - start
        summary.items_per_second = summary.done / summary.seconds if summary.seconds > 0 else 0.0
        model.close()
