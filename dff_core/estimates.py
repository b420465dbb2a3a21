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
