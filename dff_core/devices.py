"""Where the work runs: one resolver from a user's device choice to a ``torch.device``.

``auto`` (the default everywhere) is CUDA device 0 when CUDA is available, else the CPU; ``cpu``, ``cuda`` and
``cuda:N`` ask for one explicitly. An explicit CUDA choice on a machine without it is refused up front with
one line that says what to do, instead of a torch traceback halfway through a job. Torch-only on purpose:
extraction and training (and their validators) share it without pulling in storage or jobs.
"""
from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
DEVICE_HELP = "auto (CUDA when available, else CPU) | cpu | cuda | cuda:N"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` (case and spaces ignored; None means auto) -> a torch device.

    Raises ``ValueError`` with a one-line message for an unknown spec, CUDA without CUDA, or an index
    past the visible GPUs."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = "auto" if spec is None else str(spec).strip().lower()
    if text in ("", "auto"):
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    kind, sep, index = text.partition(":")
    if kind != "cuda" or (sep and not index.isdigit()):
        raise ValueError(f"unknown device {spec!r}; use {DEVICE_HELP}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} asked for, but CUDA is not available on this machine; "
                         "use --device cpu (or auto)")
    n = torch.cuda.device_count()
    i = int(index) if sep else 0
    if i >= n:
        raise ValueError(f"device {spec!r}: this machine has {n} CUDA device{'s' if n != 1 else ''} "
                         f"(cuda:0{f'..cuda:{n - 1}' if n > 1 else ''})")
    return torch.device("cuda", i)


def device_name(device: torch.device) -> str:
    """``cpu`` or ``cuda:N`` (always with the index): the form stored with runs and feature sets."""
    return "cpu" if device.type == "cpu" else f"{device.type}:{device.index or 0}"
