"""Backbone registry: a spec string (``family`` or ``family:source``) -> a loaded :class:`Backbone`.

Families are imported lazily (``"module:Class"``), so a family whose module or dependencies are missing
reports itself as unavailable without breaking the others, and listing families never loads weights.
Loaded backbones are cached per (spec, device, dtype) in the process: the dashboard and job runners
reuse one model instead of reloading hundreds of megabytes per request.
"""
from __future__ import annotations

import importlib
import os
from functools import lru_cache

# Idle OpenMP threads spin by default; on a shared, busy CPU they steal cycles from the working ones
# (measured: a SmolLM2 forward 6x slower with 2 threads on 2 loaded cores). Passive waiting costs nothing
# on an idle machine. Effective only when set before torch loads, which this package never does at import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .base import COMPUTE_DTYPES, POOLING_HELP, POOLINGS, QUANTIZATIONS, Backbone, BackboneInputError, ItemInput, \
    resolve_precision

__all__ = ["FAMILIES", "Backbone", "BackboneInputError", "ItemInput", "POOLINGS", "POOLING_HELP", "parse_spec",
           "family_class", "family_info", "list_families", "load_backbone", "clear_cache", "COMPUTE_DTYPES",
           "QUANTIZATIONS", "resolve_precision"]

FAMILIES: dict[str, str] = {
    "smollm2": "dff_core.backbones.smollm2:SmolLM2Backbone",
    "minilm": "dff_core.backbones.minilm:MiniLMBackbone",
    "efficientnet-lite0": "dff_core.backbones.efficientnet:EfficientNetLite0Backbone",
    "qwen2-vl": "dff_core.backbones.qwen_vl:Qwen2VLBackbone",
    "qwen2.5-vl": "dff_core.backbones.qwen_vl:Qwen25VLBackbone",
    "qwen3-vl": "dff_core.backbones.qwen_vl:Qwen3VLBackbone",
    "llava-onevision": "dff_core.backbones.llava_onevision:LlavaOneVisionBackbone",
    "smolvlm": "dff_core.backbones.smolvlm:SmolVLMBackbone",
}


class BackboneUnavailable(ImportError):
    """A registered family whose module (or one of its dependencies) cannot be imported here."""


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"family"`` or ``"family:source"`` (a Hugging Face id or a local checkpoint) -> (family, source)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty backbone spec; use one of {', '.join(FAMILIES)} (optionally FAMILY:HF_ID_OR_DIR)")
    family, sep, source = spec.strip().partition(":")
    family = family.strip().lower()
    if family not in FAMILIES:
        raise ValueError(f"unknown backbone family {family!r} in spec {spec!r}; known families: "
                         f"{', '.join(FAMILIES)} (spec: FAMILY or FAMILY:HF_ID_OR_DIR)")
    source = source.strip() if sep else ""
    return family, source or None


def family_class(family: str) -> type[Backbone]:
    """The adapter class of a family, imported on first use."""
    family = parse_spec(family)[0]
    module_name, _, cls_name = FAMILIES[family].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackboneUnavailable(f"backbone family {family!r} is not available on this machine: module "
                                  f"{module_name} cannot be imported ({type(exc).__name__}: {exc})") from exc
    try:
        return getattr(module, cls_name)
    except AttributeError:
        raise BackboneUnavailable(f"backbone family {family!r} is not available: {module_name} has no "
                                  f"class {cls_name}") from None


def family_info(spec: str) -> dict:
    """What a family takes and returns, from class attributes only (no weights are loaded)."""
    family, source = parse_spec(spec)
    cls = family_class(family)
    doc = (cls.__doc__ or "").strip().splitlines()
    poolings = list(cls.poolings)
    info = {
        "family": family,
        "source": source,
        "description": getattr(cls, "description", "") or (doc[0] if doc else ""),
        "inputs": list(cls.inputs),
        "default_inputs": list(getattr(cls, "default_inputs", None) or cls.inputs[:1]),
        "poolings": poolings,
        "default_pooling": cls.default_pooling if cls.default_pooling in poolings else (poolings or [None])[0],
        "can_caption": bool(getattr(cls, "can_caption", False)),
        "needs_source": bool(getattr(cls, "needs_source", False)),
        "frame_size": getattr(cls, "frame_size", None),
        "default_checkpoint": getattr(cls, "default_checkpoint", None),
        "quantizations": ["none", "int8"] if getattr(cls, "quantizable", False) else ["none"],
        "cpu_auto_dtype": getattr(cls, "cpu_auto_dtype", "float32"),
        "default_batch_size": int(getattr(cls, "default_batch_size", 8)),
        "available": True,
    }
    # shapes are known up front for built-in weights only (a user checkpoint may differ)
    if source is None and getattr(cls, "num_layers", 0):
        info["num_layers"], info["dim"] = int(cls.num_layers), int(cls.dim)
    return info


def list_families() -> list[dict]:
    """Every registered family's :func:`family_info`; unavailable ones carry ``available=False`` and why."""
    out = []
    for family in FAMILIES:
        try:
            out.append(family_info(family))
        except Exception as exc:  # noqa: BLE001 - one broken family must not hide the others
            reason = str(exc)
            out.append({"family": family, "description": "", "inputs": [], "default_inputs": [], "poolings": [],
                        "default_pooling": None, "can_caption": False, "needs_source": False, "frame_size": None,
                        "available": False, "reason": reason, "why": reason})
    return out


def _dtype_key(dtype) -> str | None:
    if dtype is None:
        return None
    return str(dtype).replace("torch.", "")


@lru_cache(maxsize=4)
def _load(family: str, source: str | None, device: str, dtype: str | None, quantize: str = "none") -> Backbone:
    cls = family_class(family)
    if getattr(cls, "needs_source", False) and source is None:
        raise ValueError(f"backbone family {family!r} needs a checkpoint: {family}:HF_ID_OR_LOCAL_DIR "
                         f"(e.g. {getattr(cls, 'default_checkpoint', None) or 'a downloaded model folder'})")
    if quantize != "none":
        resolve_precision(cls, device, dtype or "float32", quantize)  # refuses what has no int8 path
    model = cls(source, device=device, dtype=dtype)
    model.family = family
    if quantize == "int8":
        model.apply_int8()
    return model


def load_backbone(spec: str, device: str = "cpu", dtype=None, quantize: str = "none") -> Backbone:
    """The backbone for ``spec`` on ``device`` computing in ``dtype`` (None: the family's default for the
    device), with ``quantize="int8"`` its language model's linear layers dynamically quantised (CPU, float32).
    Cached in-process per spec, device, dtype and quantisation."""
    family, source = parse_spec(spec)
    return _load(family, source, str(device or "cpu"), _dtype_key(dtype), quantize or "none")


def clear_cache() -> None:
    """Drop the cached backbones (frees their memory)."""
    _load.cache_clear()
