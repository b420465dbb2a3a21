"""Keep freed memory inside the process while a CPU run trains (glibc only).

Contract: ``with keep_freed_memory():`` turns glibc's mmap allocations off and its heap trimming down for the block,
then puts glibc's defaults back and returns the freed memory to the system (``malloc_trim``). It yields whether it
did so: False on other C libraries (macOS, musl) and with ``DFF_KEEP_FREED_MEMORY=0``, where it changes nothing.
Nested blocks restore only when the outermost ends.

Why: a CPU training step allocates and frees the same large tensors every step (DFF's mixed layer and its gradient,
22 MB each for 19,220 items x 576, the projection's output, the loss's blocks). glibc serves blocks above its mmap
threshold (128 KB, rising with use to at most 32 MB) from fresh mappings and unmaps them when freed, so each step
page-faults again on memory it has just given back. Measured here (2 threads, the whole MicroLens-50k, a DFF step
over 31 SmolLM2 layers, ``bench/bench_heap.py``): 4,700-17,000 minor faults a step with glibc's defaults,
350-800 inside this block, ~9 ms (~3 %) less a step (269-281 -> 260-270 ms in three pairs of processes); an ID
step (~1,900 faults) did not change measurably. The cost is memory the process keeps between steps, no more than its peak, handed back at the end.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
from typing import Iterator

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4                  # mallopt parameters (malloc.h)
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_TRIM_THRESHOLD = 1 << 30                          # free memory at the heap's top kept up to 1 GB

_lock = threading.Lock()
_depth = 0


def _glibc():
    """The process's C library when it is glibc with ``mallopt`` and ``malloc_trim``, else None."""
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version, libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """See the module docstring."""
    global _depth
    libc = None if os.environ.get("DFF_KEEP_FREED_MEMORY") == "0" else _glibc()
    if libc is None:
        yield False
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)
