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
TRAIN_S_PER_TARGET_ITEM = {"none": (19.5 - 49 * STEP_S) / (208_562 * 19_220),
                           "bf16": (11.1 - 49 * STEP_S) / (208_562 * 19_220)}
EVAL_S_PER_USER_ITEM = 1.7 / (50_000 * 19_220)
FEATURE_FACTOR = 1.75  # a fusion epoch (training + validation) against an ID-only one: DFF over 31 SmolLM2 layers 23.7 vs 13.6 s
DEFAULT_EPOCHS_TO_STOP = 25  # early-stopped MicroLens-50k runs (best epoch ~20 + patience 5)


def training_estimate(strategies: list[str], *, users: int, items: int, targets: int, amp: str = "none",
                      batch_size: int = 1024,
                      epochs_needed: list[int] | None = None, epoch_seconds: dict[str, list[float]] | None = None,
                      cap: int | None = None) -> dict:
    """Compute a batch of training runs will take, before it is queued: ``runs × expected epochs × seconds per
    epoch`` (each run trains to early stopping, so the epochs are those earlier early-stopped runs on this dataset
    took, else :data:`DEFAULT_EPOCHS_TO_STOP`, never above the cap).

    ``strategies``: one entry per run. ``epoch_seconds``: measured seconds per epoch of earlier runs on this
    dataset, keyed ``"id"`` / ``"features"``; where a kind has none, the cost model above gives it (from the
    dataset's size: ``targets`` training targets per epoch, ``items``, ``users``, ``batch_size``). Returns ``{"runs", "epochs",
    "seconds", "seconds_per_epoch": {"id", "features"}, "measured": {"id", "features"}}``."""
    needed = sorted(int(n) for n in (epochs_needed or []) if n)
    epochs = needed[len(needed) // 2] if needed else DEFAULT_EPOCHS_TO_STOP
    if cap:
        epochs = min(epochs, int(cap))
    model_id = (targets * items * TRAIN_S_PER_TARGET_ITEM.get(amp, TRAIN_S_PER_TARGET_ITEM["none"])
                + -(-users // max(1, batch_size)) * STEP_S + users * items * EVAL_S_PER_USER_ITEM)
    per_epoch, measured = {}, {}
    for kind, modelled in (("id", model_id), ("features", model_id * FEATURE_FACTOR)):
        seen = sorted((epoch_seconds or {}).get(kind) or [])
        measured[kind] = bool(seen)
        per_epoch[kind] = seen[len(seen) // 2] if seen else modelled
    total = sum(per_epoch["id" if s == "id" else "features"] for s in strategies) * epochs
    return {"runs": len(strategies), "epochs": epochs, "seconds": total, "seconds_per_epoch": per_epoch,
            "measured": measured}


def estimate_text(est: dict) -> str:
    """One line for a page or the CLI: the total, and what it is made of and where the numbers come from."""
    def dur(s: float) -> str:
        return f"{s / 3600:.1f} h" if s >= 5400 else (f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s")

    sources = {k: "measured on this dataset" if v else "cost model" for k, v in est["measured"].items()}
    parts = [f"{dur(est['seconds_per_epoch'][k])}/epoch {k} ({sources[k]})" for k in ("id", "features")]
    runs = f"{est['runs']} run" + ("s" if est["runs"] != 1 else "")
    return (f"estimated compute: {runs} × ~{est['epochs']} epochs ≈ {dur(est['seconds'])} on this machine "
            f"({'; '.join(parts)})")
