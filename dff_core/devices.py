"""Where the work runs: one resolver from a user's device choice to a ``torch.device``.

``auto`` (the default everywhere) is CUDA device 0 when CUDA is available, else the CPU; ``cpu``, ``cuda`` and
``cuda:N`` ask for one explicitly. An explicit CUDA choice on a machine without it is refused up front with
one line that says what to do, instead of a torch traceback halfway through a job. Torch-only on purpose:
extraction and training (and their validators) share it without pulling in storage or jobs.
"""
from __future__ import annotations

import torch

from .cpu import cpu_has_bf16  # noqa: F401 - re-exported: torch-free, the pages use it too

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


def amp_problem(amp: str, device: torch.device) -> str | None:
    """Why ``amp`` cannot run on ``device`` (one line), or None. ``bf16`` runs on CUDA and on CPUs with native
    bfloat16 (:func:`cpu_has_bf16`)."""
    if amp != "bf16" or device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()):
        return None
    return (f"amp bf16 needs a CUDA device or a CPU with native bfloat16 (AVX512-BF16 or AMX), and this run would "
            f"train on {device_name(device)} without it; use --amp none")


def resolve_amp(amp: str | None, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on a CPU with native bfloat16 (measured: same converged quality, ~1.6x faster epochs),
    ``none`` elsewhere (a GPU keeps float32: its measured path); ``none`` / ``bf16`` as given."""
    if amp in (None, "", "auto"):
        return "bf16" if device.type == "cpu" and cpu_has_bf16() else "none"
    return amp
