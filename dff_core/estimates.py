"""Cost of an extraction before it runs: disk from the shape, time from measured or default throughput.

Disk = items × layers × dim × bytes per value (numpy's itemsize: 2 for float16, 4 for float32). Time = items / items-per-second,
where items-per-second is the median of earlier extractions with the same backbone family on this database
(``storage.views.family_throughput``) or, when there are none, ``DEFAULT_ITEMS_PER_S``: rough CPU figures for
the built-in families and 0.3 items/s for the multi-billion-parameter LVLMs (1.0 for unknown families).
Video frames cost ``FRAME_COST`` of an item's time per frame beyond the first (defaults only; a measured
rate already includes the frames it was measured with).
"""
from __future__ import annotations

import math

import numpy as np

DEFAULT_ITEMS_PER_S = {"smollm2": 25.0, "minilm": 150.0, "efficientnet-lite0": 20.0, "qwen2-vl": 0.3,
                       "qwen2.5-vl": 0.3, "llava": 0.3, "llava-next": 0.2, "idefics": 0.3, "smolvlm": 1.0}
UNKNOWN_ITEMS_PER_S = 1.0
FRAME_COST = 0.08


def extraction_estimate(items: int, layers: int, dim: int, family: str, inputs: list[str], num_frames: int,
                        dtype: str = "float16", measured_items_per_s: float | None = None) -> dict:
    """``{"bytes", "seconds", "items_per_s", "measured"}`` for extracting ``items`` items."""
    measured = bool(measured_items_per_s)
    if measured:
        rate = float(measured_items_per_s)
    else:
        rate = DEFAULT_ITEMS_PER_S.get(family, UNKNOWN_ITEMS_PER_S)
        if "frames" in inputs and num_frames > 1:
            rate /= 1 + FRAME_COST * (num_frames - 1)
    size = int(items) * int(layers) * int(dim) * np.dtype(dtype).itemsize
    return {"bytes": size, "seconds": items / rate if rate > 0 else math.inf, "items_per_s": rate,
            "measured": measured}


# ------------------------------------------------------------------------------------------ training

# Cost model for a dataset with no finished runs yet, measured on the 2-core Xeon this project is developed on
# (AMX / AVX512-BF16, 2 threads, batch 1024, length-bucketed batches, full softmax; bench/bench_time_to_quality.py
# on the whole MicroLens-50k: 208,562 training targets x 19,220 items per epoch, 50,000 validation users).
# An epoch's training time: the softmax over all items (targets x items x this) plus a fixed cost per step (the
# transformer, AdamW, Python: 0.15 s, from the 2,000-user demo, where the softmax is nothing).
STEP_S = 0.15
# bfloat16: 8.3 s, measured on the quiet machine (2026-12-06, fourth round: bench_time_to_quality --epoch-costs);
# float32 as measured before the softmax lost its max pass (an upper bound now). Validation: 1.9 s inside training
# (50,000 users; ~1.4 s on its own).
TRAIN_S_PER_TARGET_ITEM = {"none": (19.5 - 49 * STEP_S) / (208_562 * 19_220),
                           "bf16": (8.3 - 49 * STEP_S) / (208_562 * 19_220)}
EVAL_S_PER_USER_ITEM = 1.9 / (50_000 * 19_220)
FEATURE_FACTOR = 1.4  # a fusion epoch against an ID-only one when the feature shape is not known: DFF over 31 layers
# A fusion run's extra cost per step, from the feature shape (measured, 2026-12-06, 2 threads, the 31 x 19,220 x
# 576 SmolLM2 set): DFF's layer mix reads the buffer twice, ~58 ms a step for 31 layers from a bfloat16 buffer (~2 x
# 2 bytes a value at ~24 GB/s; float32 buffers read twice the bytes), ~43 ms from the opt-in int8 one
# (dff_core.train.trainer.feature_dtype); projecting and gating every item costs ~22 ms a step
# (fourth round: a single-layer gate's epoch measured 0.9-1.2 s over the ID one's; the third round counted 38 ms).
MIX_S_PER_VALUE = {"int8": 0.043 / (31 * 19_220 * 576), "bf16": 0.058 / (31 * 19_220 * 576),
                   "none": 2 * 0.058 / (31 * 19_220 * 576)}
PROJECT_S_PER_VALUE = 0.022 / (19_220 * 576)
# Training runs side by side (jobs.worker): on the 2 cores, two single-thread runs at once trained 1.40-1.46x as many
# epochs an hour as one two-thread run at a time (2026-12-06, whole MicroLens-50k, ID / gate on layer 30 / DFF over
# 31 layers: bench_time_to_quality --parallel 2). More than two at once, or on a GPU: not measured, priced as two / one.
SIDE_BY_SIDE_SPEEDUP = 1.4
DEFAULT_EPOCHS_TO_STOP = 23  # early-stopped MicroLens-50k runs at the defaults (1e-2 halved on each plateau): ID 20-23,
# DFF over 31 layers 26-28, a gate on the last layer 31 (one seed each where not a range)


def fusion_extra_per_epoch(layers: int, dim: int, items: int, steps: int, amp: str = "none",
                           feature_buffer: str = "float") -> float:
    """Seconds a fusion run adds to an ID-only epoch: ``steps`` x (mixing ``layers`` x ``items`` x ``dim`` values when
    there is more than one layer, from an int8 buffer where ``feature_buffer`` is ``"int8"``, plus projecting
    ``items`` x ``dim``) (constants above)."""
    values = int(items) * int(dim)
    key = "int8" if feature_buffer == "int8" else amp
    mix = MIX_S_PER_VALUE.get(key, MIX_S_PER_VALUE["none"]) * int(layers) * values if layers > 1 else 0.0
    return int(steps) * (mix + PROJECT_S_PER_VALUE * values)


def side_by_side_speedup(runs_at_once: int, on_cpu: bool = True) -> float:
    """How much sooner a batch ends with ``runs_at_once`` training runs side by side than one at a time
    (:data:`SIDE_BY_SIDE_SPEEDUP` on a CPU from two at once; 1 otherwise)."""
    return SIDE_BY_SIDE_SPEEDUP if on_cpu and runs_at_once >= 2 else 1.0


def alone_epoch_seconds(seconds_per_epoch: float, side_by_side: int, on_cpu: bool = True) -> float:
    """A stored run's seconds per epoch as if it had trained alone: ``side_by_side`` runs that each took ``s`` an
    epoch trained ``side_by_side / s`` epochs a second together, :func:`side_by_side_speedup` x one run's alone."""
    k = max(1, int(side_by_side or 1))
    return seconds_per_epoch * side_by_side_speedup(k, on_cpu) / k


def training_estimate(strategies: list[str], *, users: int, items: int, targets: int, amp: str = "none",
                      batch_size: int = 1024,
                      epochs_needed: list[int] | None = None, epoch_seconds: dict[str, list[float]] | None = None,
                      cap: int | None = None, layer_counts: list[int] | None = None, dim: int | None = None,
                      measured_layers: list[int] | None = None,
                      epochs_by_strategy: dict[str, list[int]] | None = None,
                      side_by_side: int = 1, on_cpu: bool = True, feature_buffer: str = "float") -> dict:
    """Compute a batch of training runs will take, before it is queued: ``runs × expected epochs × seconds per
    epoch`` (each run trains to early stopping, so the epochs are those earlier early-stopped runs on this dataset
    took, else :data:`DEFAULT_EPOCHS_TO_STOP`, never above the cap). A run whose strategy has early-stopped runs of
    its own (``epochs_by_strategy``) is given their epochs: DFF over many layers converges later than ID-only runs
    (MicroLens-50k: 26-28 epochs against 20-23), and one count for all priced a study at the slowest kind's.

    ``strategies``: one entry per run. ``epoch_seconds``: measured seconds per epoch of earlier runs on this
    dataset, keyed ``"id"`` / ``"features"``; where a kind has none, the cost model above gives it (from the
    dataset's size: ``targets`` training targets per epoch, ``items``, ``users``, ``batch_size``).

    With the feature set's ``dim`` and each run's number of layers (``layer_counts``, parallel to ``strategies``,
    0 for ID-only), a fusion run costs the ID epoch plus :func:`fusion_extra_per_epoch` for its own layers: a
    single-layer gate is priced near an ID run, DFF over 31 layers ~1.45× it. Measured fusion epochs are then
    read as "measured ID epoch + measured extra", the extra rescaled from the layers those runs had
    (``measured_layers``, their median) to each run's own. Without a shape, every fusion run is
    :data:`FEATURE_FACTOR` × the ID epoch, or the measured fusion median. ``feature_buffer``: DFF's buffer
    (``"int8"`` or ``"float"``, as ``dff_core.train.trainer.feature_dtype`` makes it).

    ``side_by_side``: how many of the runs a worker trains at once (``jobs.worker.train_slots``); the batch's
    seconds are the runs' summed alone-seconds over :func:`side_by_side_speedup` (``epoch_seconds`` are alone-seconds:
    :func:`alone_epoch_seconds`).

    Returns ``{"runs", "epochs", "seconds", "seconds_per_epoch": {"id", "features"}, "measured": {"id",
    "features"}, "side_by_side"}`` (``epochs``: the mean over the runs; ``seconds_per_epoch["features"]``: the mean
    over the fusion runs asked for; ``side_by_side``: runs at once)."""
    def expected(counts: list[int] | None) -> int:
        needed = sorted(int(n) for n in (counts or []) if n)
        epochs = needed[len(needed) // 2] if needed else DEFAULT_EPOCHS_TO_STOP
        return min(epochs, int(cap)) if cap else epochs

    epochs = expected(epochs_needed)
    run_epochs = [expected((epochs_by_strategy or {}).get(s) or epochs_needed) for s in strategies]
    steps = -(-users // max(1, batch_size))
    model_id = (targets * items * TRAIN_S_PER_TARGET_ITEM.get(amp, TRAIN_S_PER_TARGET_ITEM["none"])
                + steps * STEP_S + users * items * EVAL_S_PER_USER_ITEM)
    seen = {k: sorted((epoch_seconds or {}).get(k) or []) for k in ("id", "features")}
    measured = {k: bool(v) for k, v in seen.items()}
    id_epoch = seen["id"][len(seen["id"]) // 2] if seen["id"] else model_id
    counts = list(layer_counts) if layer_counts is not None and dim else None

    def fusion_epoch(layers: int | None) -> float:
        if counts is None:
            return seen["features"][len(seen["features"]) // 2] if seen["features"] else model_id * FEATURE_FACTOR
        extra = fusion_extra_per_epoch(layers or 1, dim, items, steps, amp, feature_buffer)
        if seen["features"]:
            base_layers = sorted(measured_layers or [layers or 1])[len(measured_layers or [1]) // 2]
            modelled = fusion_extra_per_epoch(base_layers, dim, items, steps, amp, feature_buffer)
            measured_extra = seen["features"][len(seen["features"]) // 2] - id_epoch
            if modelled > 0 and measured_extra > 0:
                extra *= measured_extra / modelled
        return id_epoch + extra

    per_run = [id_epoch if s == "id" else fusion_epoch(counts[i] if counts else None)
               for i, s in enumerate(strategies)]
    fusion = [x for x, s in zip(per_run, strategies) if s != "id"]
    per_epoch = {"id": id_epoch, "features": (sum(fusion) / len(fusion)) if fusion else fusion_epoch(
        max(counts or [1]) if counts is not None else None)}
    at_once = max(1, min(int(side_by_side or 1), len(strategies)))
    return {"runs": len(strategies), "epochs": round(sum(run_epochs) / len(run_epochs)) if run_epochs else epochs,
            "seconds": sum(x * n for x, n in zip(per_run, run_epochs)) / side_by_side_speedup(at_once, on_cpu),
            "seconds_per_epoch": per_epoch, "measured": measured, "side_by_side": at_once}


def estimate_text(est: dict) -> str:
    """One line for a page or the CLI: the total, and what it is made of and where the numbers come from."""
    def dur(s: float) -> str:
        return f"{s / 3600:.1f} h" if s >= 5400 else (f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s")

    sources = {k: "measured on this dataset" if v else "cost model" for k, v in est["measured"].items()}
    parts = [f"{dur(est['seconds_per_epoch'][k])}/epoch {k} ({sources[k]})" for k in ("id", "features")]
    runs = f"{est['runs']} run" + ("s" if est["runs"] != 1 else "")
    at_once = int(est.get("side_by_side") or 1)
    together = f", {at_once} side by side" if at_once > 1 else ""
    return (f"estimated compute: {runs} × ~{est['epochs']} epochs ≈ {dur(est['seconds'])} on this machine{together} "
            f"({'; '.join(parts)})")
