"""Seconds a backbone takes to load before its first item: the part of an extraction that items/s leaves out.

An extraction's time is model loading plus items / items-per-second (``dff_core.estimates``); on a small
catalogue loading dominates (the demo's 300 SmolLM2 titles: estimated 6-12 s from items/s alone, took 15 s
with loading). Low/high seconds per family, read from the weights' size on the 2-core development CPU with a
warm disk cache (the first load after boot reads the files from disk and can take twice the high figure).
"""
from __future__ import annotations

MODEL_LOAD_S: dict[str, tuple[float, float]] = {
    "smollm2": (4.0, 12.0), "minilm": (1.0, 4.0), "efficientnet-lite0": (1.0, 5.0), "tiny": (0.0, 1.0),
    "smolvlm": (10.0, 40.0), "qwen2-vl": (30.0, 120.0), "qwen2.5-vl": (30.0, 120.0), "llava": (30.0, 120.0),
    "llava-next": (30.0, 120.0), "idefics": (30.0, 120.0)}
UNKNOWN_LOAD_S = (5.0, 60.0)


def load_seconds(family: str) -> tuple[float, float]:
    """(low, high) seconds to load ``family`` (``family`` or ``family:checkpoint``); unknown families get a wide
    range rather than none, so an estimate never silently leaves loading out."""
    return MODEL_LOAD_S.get(family.split(":", 1)[0], UNKNOWN_LOAD_S)
