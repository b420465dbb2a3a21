"""The compiled loops behind :mod:`dff_core.cpu_kernels` (read its docstring): imported only when first used, so that
a process that never trains on a CPU (a dashboard page, a GPU run) does not load numba."""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

numba.config.THREADING_LAYER = "omp"      # GNU OpenMP: see dff_core.cpu_kernels, "Threads"

# Cephes expf: exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 with ln 2 split in two for exactness
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_P0, _P1, _P2, _P3, _P4, _P5 = (np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                                          4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_LO, _HI = np.float32(-87.0), np.float32(88.0)        # 2^n stays a normal float32 for n in [-126, 127]
_HALF, _ONE, _ZERO = np.float32(0.5), np.float32(1.0), np.float32(0.0)


@njit(inline="always")
def _bf16_bits(u: np.uint32) -> np.uint16:
    """The bfloat16 nearest to the float32 with bits ``u`` (ties to even, as torch rounds): its 16 high bits."""
    return np.uint16((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))


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
        for j in range(n):
            row[j] = np.int16(_bf16_bits(xb[j]))


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


@intrinsic
def _as_f32(typingctx, u):
    """The float32 whose bits are the uint32 ``u`` (a bit cast, which numba has for arrays only)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))
    return types.float32(types.uint32), codegen


@intrinsic
def _as_u32(typingctx, x):
    """The bits of the float32 ``x`` as a uint32."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.uint32))
    return types.uint32(types.float32), codegen


@njit(inline="always")
def _widen(b: np.uint16) -> np.float32:
    """bfloat16 bits -> the same value as float32 (its 16 high bits); vectorises inside a loop."""
    return _as_f32(np.uint32(b) << np.uint32(16))


@njit(inline="always")
def _eight_rows(z: np.ndarray, l0: int, s: int, n: int):
    """Columns ``s:s+n`` of layers ``l0..l0+7`` (a layer past the last reads layer 0: its weight or sum is dropped)."""
    layers = z.shape[0]
    return (z[l0, s:s + n], z[l0 + 1 if l0 + 1 < layers else 0, s:s + n],
            z[l0 + 2 if l0 + 2 < layers else 0, s:s + n], z[l0 + 3 if l0 + 3 < layers else 0, s:s + n],
            z[l0 + 4 if l0 + 4 < layers else 0, s:s + n], z[l0 + 5 if l0 + 5 < layers else 0, s:s + n],
            z[l0 + 6 if l0 + 6 < layers else 0, s:s + n], z[l0 + 7 if l0 + 7 < layers else 0, s:s + n])


@njit(cache=True, fastmath={"reassoc", "contract"})
def _mix_bf16_block(z: np.ndarray, a: np.ndarray, out: np.ndarray, lo: int, hi: int, chunk: int,
                    acc: np.ndarray) -> None:
    """Columns ``lo:hi`` of ``out = bfloat16(sum_l a[l] * z[l])``, ``chunk`` at a time into a float32 row, eight
    layers a pass (``a`` zero-padded to a multiple of eight)."""
    layers = z.shape[0]
    for s in range(lo, hi, chunk):
        n = min(chunk, hi - s)
        for j in range(n):
            acc[j] = _ZERO
        for l0 in range(0, layers, 8):
            r0, r1, r2, r3, r4, r5, r6, r7 = _eight_rows(z, l0, s, n)
            a0, a1, a2, a3, a4, a5, a6, a7 = a[l0], a[l0 + 1], a[l0 + 2], a[l0 + 3], a[l0 + 4], a[l0 + 5], \
                a[l0 + 6], a[l0 + 7]
            for j in range(n):
                acc[j] += (a0 * _widen(r0[j]) + a1 * _widen(r1[j]) + a2 * _widen(r2[j]) + a3 * _widen(r3[j])
                           + a4 * _widen(r4[j]) + a5 * _widen(r5[j]) + a6 * _widen(r6[j]) + a7 * _widen(r7[j]))
        o = out[s:s + n]
        for j in range(n):
            o[j] = _bf16_bits(_as_u32(acc[j]))


@njit(parallel=True, cache=True)
def mix_bf16_rows(z: np.ndarray, a: np.ndarray, out: np.ndarray, parts: int, chunk: int) -> None:
    """``z`` uint16 (bfloat16 bits) ``[L, M]``, ``a`` float32 ``[L]`` zero-padded to a multiple of 8, ``out`` uint16
    ``[M]``; columns in ``parts`` contiguous ranges, one per thread."""
    m = z.shape[1]
    for k in prange(parts):
        acc = np.empty(chunk, np.float32)
        _mix_bf16_block(z, a, out, k * m // parts, (k + 1) * m // parts, chunk, acc)


@njit(cache=True, fastmath={"reassoc", "contract"})
def _bf16_dots_block(z: np.ndarray, g: np.ndarray, t: np.ndarray, lo: int, hi: int, chunk: int,
                     gf: np.ndarray) -> None:
    """``t[l] += sum_{j in lo:hi} z[l, j] * g[j]``, ``chunk`` columns at a time: that chunk of ``g`` widened once
    into a float32 row, eight layers dotted with it a pass in float32, each chunk's dot added to ``t`` (float64)."""
    layers = z.shape[0]
    for s in range(lo, hi, chunk):
        n = min(chunk, hi - s)
        gs = g[s:s + n]
        for j in range(n):
            gf[j] = _widen(gs[j])
        for l0 in range(0, layers, 8):
            r0, r1, r2, r3, r4, r5, r6, r7 = _eight_rows(z, l0, s, n)
            d0 = d1 = d2 = d3 = d4 = d5 = d6 = d7 = _ZERO
            for j in range(n):
                gj = gf[j]
                d0 += _widen(r0[j]) * gj
                d1 += _widen(r1[j]) * gj
                d2 += _widen(r2[j]) * gj
                d3 += _widen(r3[j]) * gj
                d4 += _widen(r4[j]) * gj
                d5 += _widen(r5[j]) * gj
                d6 += _widen(r6[j]) * gj
                d7 += _widen(r7[j]) * gj
            t[l0] += d0
            t[l0 + 1] += d1
            t[l0 + 2] += d2
            t[l0 + 3] += d3
            t[l0 + 4] += d4
            t[l0 + 5] += d5
            t[l0 + 6] += d6
            t[l0 + 7] += d7


@njit(parallel=True, cache=True)
def bf16_dots_rows(z: np.ndarray, g: np.ndarray, t: np.ndarray, parts: int, chunk: int) -> None:
    """``z`` uint16 (bfloat16 bits) ``[L, M]``, ``g`` uint16 ``[M]``, ``t`` float64 ``[parts, >= L rounded up to
    8]`` (zeroed by the caller; columns past ``L`` are scratch): each thread's share of ``z @ g`` over a contiguous
    range of columns."""
    m = z.shape[1]
    for k in prange(parts):
        gf = np.empty(chunk, np.float32)
        _bf16_dots_block(z, g, t[k], k * m // parts, (k + 1) * m // parts, chunk, gf)


@njit(cache=True, fastmath={"reassoc", "contract"})
def _mix_q8_block(q: np.ndarray, c: np.ndarray, out: np.ndarray, i0: int, i1: int, items: int,
                  acc: np.ndarray) -> None:
    """Items ``i0:i1`` of ``out[i] = bfloat16(sum_l c[l] * q[l, i])``, ``items`` at a time into a float32 block, eight
    layers a pass (``q`` as ``[L, N*D]``, ``c`` zero-padded to a multiple of eight layers)."""
    layers, dim = q.shape[0], c.shape[1]
    for s in range(i0, i1, items):
        k = min(items, i1 - s)
        for j in range(k * dim):
            acc[j] = _ZERO
        for l0 in range(0, layers, 8):
            c0, c1, c2, c3, c4, c5, c6, c7 = c[l0], c[l0 + 1], c[l0 + 2], c[l0 + 3], c[l0 + 4], c[l0 + 5], \
                c[l0 + 6], c[l0 + 7]
            for i in range(k):
                r0, r1, r2, r3, r4, r5, r6, r7 = _eight_rows(q, l0, (s + i) * dim, dim)
                o = i * dim
                for d in range(dim):
                    acc[o + d] += (c0[d] * np.float32(r0[d]) + c1[d] * np.float32(r1[d])
                                   + c2[d] * np.float32(r2[d]) + c3[d] * np.float32(r3[d])
                                   + c4[d] * np.float32(r4[d]) + c5[d] * np.float32(r5[d])
                                   + c6[d] * np.float32(r6[d]) + c7[d] * np.float32(r7[d]))
        for i in range(k):
            row, o = out[s + i], i * dim
            for d in range(dim):
                row[d] = _bf16_bits(_as_u32(acc[o + d]))


@njit(parallel=True, cache=True)
def mix_q8_rows(q: np.ndarray, c: np.ndarray, out: np.ndarray, parts: int, items: int) -> None:
    """``q`` int8 ``[L, N*D]``, ``c`` float32 ``[L rounded up to 8, D]``, ``out`` uint16 (bfloat16 bits) ``[N, D]``;
    items in ``parts`` contiguous ranges, one per thread."""
    n = out.shape[0]
    for k in prange(parts):
        acc = np.empty(items * c.shape[1], np.float32)
        _mix_q8_block(q, c, out, k * n // parts, (k + 1) * n // parts, items, acc)


@njit(cache=True, fastmath={"reassoc", "contract"})
def _q8_grad_block(q: np.ndarray, g: np.ndarray, t: np.ndarray, i0: int, i1: int, gf: np.ndarray) -> None:
    """``t[l, d] += sum_{i in i0:i1} q[l, i, d] * g[i, d]`` (``q`` as ``[L, N*D]``, ``g`` bfloat16 bits ``[N, D]``, ``t``
    ``[L rounded up to 8, D]``, rows past ``L`` scratch): each row of ``g`` widened once, eight layers a pass."""
    layers, dim = q.shape[0], t.shape[1]
    for i in range(i0, i1):
        gi = g[i]
        for d in range(dim):
            gf[d] = _widen(gi[d])
        for l0 in range(0, layers, 8):
            r0, r1, r2, r3, r4, r5, r6, r7 = _eight_rows(q, l0, i * dim, dim)
            t0, t1, t2, t3, t4, t5, t6, t7 = t[l0], t[l0 + 1], t[l0 + 2], t[l0 + 3], t[l0 + 4], t[l0 + 5], \
                t[l0 + 6], t[l0 + 7]
            for d in range(dim):
                gd = gf[d]
                t0[d] += gd * np.float32(r0[d])
                t1[d] += gd * np.float32(r1[d])
                t2[d] += gd * np.float32(r2[d])
                t3[d] += gd * np.float32(r3[d])
                t4[d] += gd * np.float32(r4[d])
                t5[d] += gd * np.float32(r5[d])
                t6[d] += gd * np.float32(r6[d])
                t7[d] += gd * np.float32(r7[d])


@njit(parallel=True, cache=True)
def q8_grad_rows(q: np.ndarray, g: np.ndarray, t: np.ndarray, parts: int) -> None:
    """``t`` float32 ``[parts, L rounded up to 8, D]`` (zeroed by the caller): each thread's share of
    ``sum_i q[:, i] * g[i]``."""
    n = g.shape[0]
    for k in prange(parts):
        gf = np.empty(g.shape[1], np.float32)
        _q8_grad_block(q, g, t[k], k * n // parts, (k + 1) * n // parts, gf)
