"""Two CPU loops that torch takes several passes for, compiled by numba: each reads a big block once.

* :func:`exp_rows_` -- the full softmax's exponentials. It takes a C-contiguous CPU ``bfloat16`` tensor ``z [P, N]``
  and returns its float32 row sums ``s[i] = sum_j exp(z[i, j])`` after overwriting ``z`` with ``bfloat16(exp(z))``:
  the same values, bit for bit in ``z`` and within a few float32 ulps in ``s``, as the torch sequence it replaces in
  :class:`dff_core.train.losses.ChunkedLogSumExp` (copy to float32, ``exp_``, ``sum``, copy back; tested). Entries
  below -87 give 0 (a row that vanishes sums to 0), entries above 88 give ``exp(88)`` (the caller's range check sees
  a huge sum), NaN stays NaN: the caller redoes any such block with its row maxima, as before.
  Why: after its products these were the biggest share of a CPU training step. Torch takes four passes over each
  ``[256, 19,221]`` block (bfloat16 to float32, exp, sum, float32 to bfloat16; its own bfloat16 ``exp_`` is slower
  still), ~55 ms a 4,096-position step on 2 cores; one pass that reads the bfloat16 logits and writes the bfloat16
  exponentials, a row at a time through two L1-sized scratch rows, takes ~35 ms. ``exp`` is Cephes' ``expf`` (range
  reduction by ``ln 2`` in two parts, a degree-6 polynomial, ``2^n`` built from its exponent bits), which numba's
  LLVM vectorises; bfloat16 is handled as its 16 high float32 bits, rounded to nearest even as torch does.
* :func:`count_at_least` -- the ranking's count ``#(scores[i] >= t[i])`` and each row's sum (finite only if every
  score is, as :func:`dff_core.eval.metrics.check_finite` uses it) in one read of a float32 score block, where torch
  took a sum pass, a comparison written to a second block and a product with ones. Exact: integer counts, the same
  ``>=`` on the same float32 values.

* :func:`mix_q8` and :func:`q8_layer_sums` -- DFF's layer mix over an int8 feature buffer (``[L, N, D]`` with a
  float32 scale per layer and dimension, :func:`dff_core.models.item_encoders.quantize_int8`): the forward
  ``h[i] = bfloat16(sum_l c[l] * q[l, i])`` with ``c[l] = a[l] * scale[l]``, and the backward's
  ``T[l, d] = sum_i q[l, i, d] * g[i, d]`` (then ``d a[l] = sum_d scale[l, d] T[l, d]``), each one read of the
  int8 buffer with the int8 -> float32 widening inside the loop, eight layers a pass as below. Why: the mix is
  memory-bound, and torch has no product of an int8 matrix with float weights; for 31 SmolLM2 layers over 19,220
  items these take ~18-19 + ~23 ms a step (one layer a pass took ~21-27 + ~23; the floor at half the bfloat16
  buffer's bytes is ~14 each).

* :func:`mix_bf16` and :func:`bf16_layer_dots` -- the same mix over a bfloat16 buffer ``[L, N*D]``, forward
  ``h = bfloat16(sum_l a[l] * z[l])`` and backward ``d a = z @ g``, in float32 and rounded once. Each pass takes
  eight layers' next 8,192 columns, widens them in registers (bfloat16 is float32's high half: a shift and a bit
  cast) and adds into, or dots with, one 32 KB float32 row kept in L1. Why: the mix is memory-bound, and torch's
  products read the 0.69 GB buffer at 16-20 GB/s (oneDNN's ``[1, L] x [L, N*D]`` ~39-43 ms; the backward, made
  eight columns wide for oneDNN, ~34 ms and its partial sums rounded to bfloat16, far off where they cancel);
  eight streams a pass keep enough loads in flight to read at the memory's speed: ~28-29 ms each, the time a
  float32 ``sum`` over as many bytes takes here. (Four layers a pass through L1 scratch rows, 256 columns, took
  ~34-39 ms; 8,192 columns beat 256-2,048 by 5-25 %.)

Threads: numba's ``omp`` threading layer (GNU OpenMP), the rows split evenly, as many threads as torch uses.
Measured here, the exponentials take ~35 ms a step that way, and 70-75 ms with numba's ``workqueue`` layer or a
Python thread pool (slower than torch's own ops): torch's OpenMP threads spin for a while after each product, and
those pools' threads then share the cores with them. So where numba or its ``omp`` layer cannot load (no
``libgomp``), :func:`usable` is false and callers keep torch's ops. The loops are compiled once per machine
(numba's cache, ~2 s) and loaded in ~0.3 s by each process that first needs them; GPUs never come here.
"""
from __future__ import annotations

import torch

_loops = None          # dff_core.cpu_loops once loaded; False where it cannot load


def usable() -> bool:
    """Whether these loops run here: numba imports and its ``omp`` layer loads (tried once per process, on tiny
    blocks, which also loads or compiles the loops; a failure keeps torch's ops for the process)."""
    global _loops
    if _loops is None:
        _loops = False
        threads = torch.get_num_threads()
        try:
            from . import cpu_loops
            _loops = cpu_loops
            exp_rows_(torch.zeros(2, 4, dtype=torch.bfloat16))
            count_at_least(torch.zeros(2, 4), torch.zeros(2))
        except Exception:  # noqa: BLE001 - no numba, or no omp layer: torch's ops stay
            _loops = False
        finally:
            # starting the omp layer resets torch's OpenMP thread count to the machine's (a run set to 1 thread
            # ran on 2 from its first validation on, and two identical runs then differed): put it back
            torch.set_num_threads(threads)
    return bool(_loops)


def _threads(rows: int) -> int:
    threads = max(1, min(torch.get_num_threads(), _loops.numba.config.NUMBA_NUM_THREADS, rows))
    _loops.numba.set_num_threads(threads)
    return threads


def _check(x: torch.Tensor, dtype: torch.dtype, dims: int, name: str, shape: str) -> None:
    """The loops read a tensor's memory as is: it must be a contiguous CPU tensor of that dtype and rank."""
    if x.dtype != dtype or x.dim() != dims or x.device.type != "cpu" or not x.is_contiguous():
        raise ValueError(f"{name} takes a contiguous CPU {str(dtype).removeprefix('torch.')} {shape} tensor, "
                         f"got {x.dtype} {tuple(x.shape)}")


def _bf16_bits(x: torch.Tensor):
    """A bfloat16 tensor's memory as a uint16 numpy array (numpy has no bfloat16)."""
    return x.view(torch.int16).numpy().view("uint16")


def exp_rows_(z: torch.Tensor) -> torch.Tensor:
    """Overwrite ``z`` (``bfloat16 [P, N]``, CPU, contiguous) with ``exp(z)``; return the float32 row sums (module
    docstring). Requires :func:`usable`."""
    _check(z, torch.bfloat16, 2, "exp_rows_", "[P, N]")
    sums = torch.empty(z.shape[0], dtype=torch.float32)
    _loops.exp_rows(z.view(torch.int16).numpy(), sums.numpy(), _threads(z.shape[0]))
    return sums


def count_at_least(scores: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(counts int64 [B], row sums float32 [B])``: ``counts[i] = #(scores[i] >= t[i])`` for a contiguous CPU float32
    ``scores [B, N]`` and ``t [B]`` (module docstring). Requires :func:`usable`."""
    _check(scores, torch.float32, 2, "count_at_least", "[B, N]")
    t = t.to(torch.float32).contiguous()
    counts = torch.empty(scores.shape[0], dtype=torch.int64)
    sums = torch.empty(scores.shape[0], dtype=torch.float32)
    _loops.count_rows(scores.numpy(), t.numpy(), counts.numpy(), sums.numpy(), _threads(scores.shape[0]))
    return counts, sums


def mix_q8(q: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """``bfloat16 [N, D]``: ``sum_l coef[l] * q[l]`` for a contiguous CPU int8 ``q [L, N, D]`` and float32
    ``coef [L, D]``, accumulated in float32 (module docstring). Requires :func:`usable`."""
    _check(q, torch.int8, 3, "mix_q8", "[L, N, D]")
    L, N, D = q.shape
    out = torch.empty(N, D, dtype=torch.bfloat16)
    _loops.mix_q8_rows(q.view(L, N * D).numpy(), _zero_padded8(coef).numpy(), _bf16_bits(out), _threads(N),
                       max(1, MIX_CHUNK // D))
    return out


def q8_layer_sums(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``float32 [L, D]``: ``sum_i q[:, i, :] * g[i]`` for a contiguous CPU int8 ``q [L, N, D]`` and ``g [N, D]``
    (made bfloat16: the gradient of :func:`mix_q8`'s output, which is bfloat16). Requires :func:`usable`."""
    _check(q, torch.int8, 3, "q8_layer_sums", "[L, N, D]")
    L, N, D = q.shape
    g = g.to(torch.bfloat16).contiguous()
    parts = _threads(N)
    t = torch.zeros(parts, _padded8(L), D, dtype=torch.float32)
    _loops.q8_grad_rows(q.view(L, N * D).numpy(), _bf16_bits(g), t.numpy(), parts)
    return t[:, :L].sum(0)


MIX_CHUNK = 8192   # columns a pass of the bfloat16 loops: 32 KB float32 rows in L1 (measured: 256 ~25 % slower)


def _padded8(n: int) -> int:
    """``n`` rounded up to a multiple of 8: the loops take eight layers a pass."""
    return -(-n // 8) * 8


def _zero_padded8(w: torch.Tensor) -> torch.Tensor:
    """Per-layer weights ``w [L, ...]`` as float32 with zero rows up to a multiple of 8 (the layers a pass reads past
    the last get weight 0)."""
    out = torch.zeros(_padded8(w.shape[0]), *w.shape[1:], dtype=torch.float32)
    out[:w.shape[0]] = w.detach()
    return out


def mix_bf16(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``bfloat16 [M]``: ``sum_l a[l] * z[l]`` for a contiguous CPU bfloat16 ``z [L, M]`` and ``a [L]``, accumulated
    in float32 and rounded once (module docstring). Requires :func:`usable`."""
    _check(z, torch.bfloat16, 2, "mix_bf16", "[L, M]")
    out = torch.empty(z.shape[1], dtype=torch.bfloat16)
    _loops.mix_bf16_rows(_bf16_bits(z), _zero_padded8(a).numpy(), _bf16_bits(out),
                         _threads(max(1, z.shape[1] // MIX_CHUNK)), MIX_CHUNK)
    return out


def bf16_layer_dots(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``float32 [L]``: ``z @ g`` for a contiguous CPU bfloat16 ``z [L, M]`` and ``g [M]`` (made bfloat16), products
    and each chunk's sum in float32, the chunks summed in float64 (module docstring). Requires :func:`usable`."""
    _check(z, torch.bfloat16, 2, "bf16_layer_dots", "[L, M]")
    g = g.to(torch.bfloat16).contiguous()
    parts = _threads(max(1, z.shape[1] // MIX_CHUNK))
    t = torch.zeros(parts, _padded8(z.shape[0]), dtype=torch.float64)
    _loops.bf16_dots_rows(_bf16_bits(z), _bf16_bits(g), t.numpy(), parts, MIX_CHUNK)
    return t[:, :z.shape[0]].sum(0).float()
