"""The compiled loops behind :mod:`dff_core.cpu_kernels` (read its docstring): imported only when first used, so that
a process that never trains on a CPU (a dashboard page, a GPU run) does not load numba."""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

numba.config.THREADING_LAYER = "omp"      # GNU OpenMP: see dff_core.cpu_kernels, "Threads"

# Cephes expf: exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 with ln 2 split in two for exactness
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_P0, _P1, _P2, _P3, _P4, _P5 = (np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                                          4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_LO, _HI = np.float32(-87.0), np.float32(88.0)        # 2^n stays a normal float32 for n in [-126, 127]
_HALF, _ONE, _ZERO = np.float32(0.5), np.float32(1.0), np.float32(0.0)


@njit(cache=True, fastmath={"reassoc", "contract"})  # reassoc lets the row sum vectorise; no nnan/ninf
def _exp_block(z: np.ndarray, sums: np.ndarray, lo: int, hi: int) -> None:
    """Rows ``lo:hi`` of ``z`` (int16 view of bfloat16 ``[rows, N]``, overwritten), their sums into ``sums``."""
    n = z.shape[1]
    xb = np.empty(n, np.uint32)
    x = xb.view(np.float32)                          # the row as float32: bfloat16 bits << 16
    pb = np.empty(n, np.uint32)
    pw = pb.view(np.float32)                         # 2^n per entry, from its exponent bits
    for i in range(lo, hi):
        row = z[i]
        for j in range(n):
            xb[j] = np.uint32(np.uint16(row[j])) << np.uint32(16)
        for j in range(n):
            o = x[j]
            v = min(max(o, _LO), _HI)
            t = np.floor(v * _LOG2E + _HALF)
            r = v - t * _LN2_HI - t * _LN2_LO
            p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
            pb[j] = np.uint32(np.int32(t) + 127) << np.uint32(23)
            x[j] = p * r * r + r + _ONE if o >= _LO else (_ZERO if o == o else o)   # NaN stays NaN
        s = _ZERO
        for j in range(n):
            e = x[j] * pw[j]
            x[j] = e
            s += e
        sums[i] = s
        for j in range(n):                           # round to nearest even, keep the high 16 bits
            u = xb[j]
            u = u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
            row[j] = np.int16(np.uint16(u >> np.uint32(16)))


@njit(parallel=True, cache=True)
def exp_rows(z: np.ndarray, sums: np.ndarray, parts: int) -> None:
    """All rows, in ``parts`` contiguous ranges, one per thread."""
    for k in prange(parts):
        _exp_block(z, sums, k * z.shape[0] // parts, (k + 1) * z.shape[0] // parts)


@njit(cache=True, fastmath={"reassoc"})              # the sum only; the comparisons are exact
def _count_block(scores: np.ndarray, t: np.ndarray, counts: np.ndarray, sums: np.ndarray, lo: int, hi: int):
    for i in range(lo, hi):
        row, ti = scores[i], t[i]
        c = 0
        s = _ZERO
        for j in range(row.shape[0]):
            c += row[j] >= ti
            s += row[j]
        counts[i] = c
        sums[i] = s


@njit(parallel=True, cache=True)
def count_rows(scores: np.ndarray, t: np.ndarray, counts: np.ndarray, sums: np.ndarray, parts: int) -> None:
    for k in prange(parts):
        _count_block(scores, t, counts, sums, k * scores.shape[0] // parts, (k + 1) * scores.shape[0] // parts)
