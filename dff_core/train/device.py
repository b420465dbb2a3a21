"""Which torch device a training run uses: ``auto`` (CUDA when there is one, else CPU), ``cpu``, ``cuda`` or
``cuda:N``.

The spec is resolved once, where a run is requested (``jobs.submit`` validates it before anything is queued)
and again where it runs (``dff_core.workflows.run_training``), so a queued ``auto`` job trains on the worker's
GPU when it has one. The run's config stores the resolved device (``cpu``, ``cuda:0``): that is what Compare
shows. A bad spec is a ``ValueError`` with one line that says what to pass instead.
"""
from __future__ import annotations

import re

import torch

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"


def resolve_device(spec: str | None) -> str:
    """``auto`` -> ``"cuda"`` if CUDA is available else ``"cpu"``; ``cpu``; ``cuda`` / ``cuda:N`` when that
    GPU exists (``ValueError`` otherwise); anything else -> ``ValueError``."""
    s = (spec or "auto").strip().lower()
    if s == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if s == "cpu":
        return "cpu"
    m = re.fullmatch(r"cuda(?::(\d+))?", s)
    if m is None:
        raise ValueError(f"unknown device {spec!r}; use {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} asked for, but CUDA is not available on this machine; "
                         "use --device cpu or --device auto")
    if m.group(1) is not None:
        n = torch.cuda.device_count()
        if int(m.group(1)) >= n:
            raise ValueError(f"device {spec!r} does not exist: this machine has {n} CUDA device(s) "
                             f"(cuda:0..cuda:{n - 1})")
    return s
