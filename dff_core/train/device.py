"""Which torch device a training run uses: ``auto`` (CUDA when there is one, else CPU), ``cpu``, ``cuda`` or
``cuda:N`` — the one resolver of :mod:`dff_core.devices`, in the string form a run's config stores.

The spec is resolved once, where a run is requested (``jobs.submit`` validates it before anything is queued)
and again where it runs (``jobs.workflows.run_training``), so a queued ``auto`` job trains on the worker's
GPU when it has one. The run's config stores the resolved device (``cpu``, ``cuda:0``): that is what Compare
shows. A bad spec is a ``ValueError`` with one line that says what to pass instead.
"""
from __future__ import annotations

from dff_core.devices import device_name
from dff_core.devices import resolve_device as _resolve


def resolve_device(spec: str | None) -> str:
    """``auto`` -> ``"cuda:0"`` if CUDA is available else ``"cpu"``; ``cpu``; ``cuda`` / ``cuda:N`` when that
    GPU exists (``ValueError`` otherwise); anything else -> ``ValueError``."""
    return device_name(_resolve(spec))
