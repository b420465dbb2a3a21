"""What this CPU can do, read without torch (the dashboard's pages must not wait for torch to load)."""
from __future__ import annotations

import os


def cpu_has_bf16() -> bool:
    """True when this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16): only there does bfloat16 pay
    on a CPU; elsewhere torch emulates it, slower than float32. Read from ``/proc/cpuinfo`` (Linux); False
    where that is missing. ``DFF_CPU_BF16=0|1`` overrides it (tests, and a machine that reports wrongly)."""
    forced = os.environ.get("DFF_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))
