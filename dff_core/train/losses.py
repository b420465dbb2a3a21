"""Training objectives for next-item prediction, each a plain function of hidden states and the item table.

Contract shared by all: ``h`` are SASRec hidden states, ``table [num_items + 1, d]`` the item table (row 0 =
padding), targets are model indices (``1..num_items``; ``0`` = no target). Every loss is a mean over the
positions that have a target.

* :func:`full_softmax_loss` -- cross-entropy over ALL items (SASRec's objective as trained here). It never holds
  the ``[positions, items]`` logits: :class:`ChunkedLogSumExp` computes ``logsumexp(h W^T)`` a block of rows at
  a time into one reused buffer and recomputes the block in backward. Why: on a CPU the logits of one batch
  (4,000 positions x 19,221 items = 300 MB in float32) are written, read and re-allocated (page faults) five
  times by ``F.cross_entropy`` + autograd, which costs more than the matrix products themselves. Here each
  block stays in the cache between its product and its exponentials; the products may run in bfloat16
  (``matmul_dtype``), accumulating in float32, which AMX / AVX512-BF16 CPUs do several times faster.
* :func:`sampled_softmax_loss` -- softmax over the target and the user's sampled negatives (no correction).
* :func:`logq_softmax_loss` -- softmax over the target and ``K`` negatives shared by the whole batch, drawn
  uniformly without replacement (:func:`dff_core.train.negatives.shared_negatives`), each negative's logit raised
  by ``log(N / K)`` (the logQ correction of Yi et al., RecSys 2019, for a uniform proposal): the sampled sum then
  estimates the full softmax's partition function without bias, so its gradient is the full softmax's in
  expectation, while the products shrink from ``N`` to ``K`` columns. The target among the negatives (an
  accidental hit) is masked out.
* :func:`gbce_loss` -- gSASRec's generalised binary cross-entropy (Petrov & Macdonald, RecSys 2023): a sigmoid
  loss over the positive and ``k`` sampled negatives whose positive term is raised to the power
  ``beta = alpha (t (1 - 1/alpha) + 1/alpha)``, ``alpha = k / (num_items - 1)``. Why: sampling ``k`` of
  ``N - 1`` negatives makes a plain BCE model over-confident about the positive; ``t`` in ``[0, 1]``
  calibrates that back (``t = 0``: ``beta = 1``, plain BCE; ``t = 1``: ``beta = alpha``, fully calibrated).
  The paper reports full-softmax quality with ``k = 256, t = 0.75``; ``bench/bench_time_to_quality.py``
  measures it here.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import cpu_kernels

# rows of the logit block: 256 x 19,221 items x 4 bytes = 20 MB, inside this CPU's L3 and small next to any batch
LSE_CHUNK = 256
# the largest row sum of unshifted exponentials ChunkedLogSumExp keeps: 2^100, far inside float32's 3.4e38, so the
# backward's product (each entry at most sum(e) * max|W|) cannot overflow for any |W| below 2^27
SUM_LIMIT = 2.0 ** 100


class _Workspace:
    """Big scratch tensors reused from one training step to the next: a fresh ``[positions, items]`` block (150 MB
    in bfloat16 for a 1,024-user MicroLens batch) is a fresh ``mmap`` whose first touch page-faults, measured at
    a quarter of the loss's time on 2 cores. One flat buffer per (dtype, device), grown to the largest block
    asked for, is lent out in forward and given back in backward; while it is lent (a second graph in flight, or
    a forward without backward) a request gets a fresh tensor, so memory stays bounded by the largest step."""

    def __init__(self) -> None:
        self.free: dict[tuple, torch.Tensor] = {}

    def take(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        need = math.prod(shape)
        flat = self.free.pop((dtype, device), None)
        if flat is None or flat.numel() < need:
            flat = torch.empty(need, dtype=dtype, device=device)
        return flat[:need].view(shape)

    def give(self, t: torch.Tensor) -> None:
        """Give back a tensor :meth:`take` returned (its whole flat buffer goes back)."""
        base = t._base if t._base is not None else t
        key = (t.dtype, t.device)
        kept = self.free.get(key)
        if kept is None or kept.numel() < base.numel():
            self.free[key] = base.view(-1)


WORKSPACE = _Workspace()


class ChunkedLogSumExp(torch.autograd.Function):
    """``logsumexp(h @ W.T, dim=1)`` for ``h [P, d]`` and ``W [N, d]``, block by block (see module docstring).

    ``matmul_dtype`` (``torch.float32`` or ``torch.bfloat16``) is the dtype of the products' operands and of the
    kept exponentials ``e = exp(z - shift)``; sums and logs stay in float32. The shift is 0 unless a block's sums
    vanish or exceed :data:`SUM_LIMIT` / max|W| (logits beyond about +-65, where the backward's ``e @ W`` could
    overflow float32 even though the sums do not), where that block is redone with the row maxima: skipping the
    max pass and its subtraction saves two of the block's six passes. Backward is two products over the kept
    ``e``, with the per-row factor ``grad / sum(e)`` applied to the small operands: ``dh = (e @ W) * f``,
    ``dW = e.T @ (h * f)``. Nothing is recomputed and the big buffers come from :data:`WORKSPACE`."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, matmul_dtype: torch.dtype, chunk: int) -> torch.Tensor:
        hm, wm = h.detach().to(matmul_dtype), w.detach().to(matmul_dtype)
        wt = wm.T.contiguous()      # [d, N]: oneDNN's h @ W.T runs ~1.5x faster from a contiguous W.T than a view
        P, N = h.shape[0], w.shape[0]
        kept = WORKSPACE.take((P, N), matmul_dtype, h.device)
        total = torch.empty(P, dtype=torch.float32, device=h.device)     # sum(e) per row
        shift = torch.zeros(P, dtype=torch.float32, device=h.device)
        z32 = (None if matmul_dtype == torch.float32
               else WORKSPACE.take((min(chunk, max(P, 1)), N), torch.float32, h.device))

        # Unshifted exponentials must leave the backward's product e @ W room in float32: every entry of it is at
        # most sum(e) * max|W|, so a block is redone with its row maxima when that bound could overflow (or a sum
        # vanishes). A sum of e is finite long before e @ W is: checking only the sums let large logits through.
        limit = SUM_LIMIT / max(float(wm.abs().max()), 1.0)

        def in_range(sums: torch.Tensor) -> bool:
            return bool((sums.max() <= limit) & (sums.min() > 0))      # a NaN fails both comparisons

        def logits(rows: slice) -> torch.Tensor:
            """The block's logits, in float32 (``z32``) when the products run in bfloat16."""
            z = torch.mm(hm[rows], wt, out=kept[rows])
            return z if z32 is None else z32[:z.shape[0]].copy_(z)

        fused = matmul_dtype == torch.bfloat16 and h.device.type == "cpu" and cpu_kernels.usable()
        for s in range(0, P, chunk):
            rows = slice(s, min(s + chunk, P))
            if fused:                                                  # one pass, in place (cpu_kernels)
                z = None
                sums = cpu_kernels.exp_rows_(torch.mm(hm[rows], wt, out=kept[rows]))
            else:
                z = logits(rows)
                sums = z.exp_().sum(dim=1)
            if not in_range(sums):                                     # out of range: shift by the row maxima
                z = logits(rows)
                m = z.amax(dim=1, keepdim=True)
                sums = z.sub_(m).exp_().sum(dim=1)
                shift[rows] = m.squeeze(1)
            total[rows] = sums
            if z32 is not None and z is not None:
                kept[rows] = z
        if z32 is not None:
            WORKSPACE.give(z32)
        ctx.save_for_backward(hm, wm, kept, total)
        ctx.dtypes = (h.dtype, w.dtype)
        return total.log().add_(shift)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        hm, wm, kept, total = ctx.saved_tensors
        f = (grad.float() / total).unsqueeze(1)                          # [P, 1]
        grad_h = (kept @ wm).float().mul_(f)
        grad_w = ((hm.float() * f).to(hm.dtype).T.contiguous() @ kept).T.float()   # (h f)^T e: ~1.7x kept.T @ (h f)
        WORKSPACE.give(kept)
        return grad_h.to(ctx.dtypes[0]), grad_w.to(ctx.dtypes[1]), None, None


def full_softmax_loss(h: torch.Tensor, targets: torch.Tensor, table: torch.Tensor,
                      matmul_dtype: torch.dtype = torch.float32, chunk: int = LSE_CHUNK) -> torch.Tensor:
    """Mean cross-entropy over all items: ``h [P, d]`` (positions with a target), ``targets [P]`` model indices.

    Equals ``F.cross_entropy(h @ table[1:].T, targets - 1)`` (tested) without materialising the logits."""
    items = table[1:]
    target_logit = (h.float() * items[targets - 1].float()).sum(-1)
    lse = ChunkedLogSumExp.apply(h.float(), items.float(), matmul_dtype, chunk)
    return (lse - target_logit).mean()


def sampled_softmax_loss(h: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                         table: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions with a target, each against ``[positive, its user's negatives]``.

    ``h [B, T, d]`` hidden states, ``targets [B, T]`` model indices (0 = no target), ``negatives [B, N]`` model
    indices shared by all positions of a row (0 = none: masked out). The positive is logit 0 of every row."""
    pos, neg, _ = _pos_neg_logits(h, targets, negatives, table)
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)                  # [P, 1 + N]
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def logq_softmax_loss(h: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, table: torch.Tensor,
                      num_items: int) -> torch.Tensor:
    """Mean cross-entropy over ``[positive, shared negatives]``: ``h [P, d]`` (positions with a target),
    ``targets [P]`` and ``negatives [K]`` model indices, the negatives drawn uniformly without replacement from
    all ``num_items`` items. Each negative's logit gets ``+ log(num_items / K)`` (module docstring); with
    ``K = num_items`` this is exactly :func:`full_softmax_loss`."""
    k = negatives.shape[0]
    pos = (h * table[targets]).sum(-1, keepdim=True).float()                # [P, 1]
    neg = (h @ table[negatives].T).float() + math.log(num_items / k)        # [P, K]
    neg = neg.masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def gbce_beta(negatives: int, num_items: int, t: float) -> float:
    """gSASRec's exponent of the positive term: ``alpha (t (1 - 1/alpha) + 1/alpha)``, ``alpha = k / (N - 1)``."""
    alpha = negatives / max(num_items - 1, 1)
    return alpha * (t * (1 - 1 / alpha) + 1 / alpha)


def gbce_loss(h: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, table: torch.Tensor,
              num_items: int, t: float) -> torch.Tensor:
    """gBCE (module docstring) over the positions with a target; shapes as :func:`sampled_softmax_loss`.

    ``-beta * log sigmoid(s+) - sum_j log(1 - sigmoid(s-_j))``, masked negatives (0) contribute nothing,
    averaged over positions."""
    k = negatives.shape[1]
    beta = gbce_beta(k, num_items, t)
    pos, neg, valid = _pos_neg_logits(h, targets, negatives, table)
    neg_term = (F.softplus(neg.masked_fill(~valid, 0.0)) * valid).sum(1)   # -log(1 - sigmoid(s)) = softplus(s)
    return (beta * F.softplus(-pos) + neg_term).mean()                       # -log sigmoid(s) = softplus(-s)


def _pos_neg_logits(h, targets, negatives, table):
    """``(positive [P], negatives [P, N] with -inf where masked, valid [P, N])`` for the positions with a target:
    each position is scored against its own row's negatives only (one batched product per row of the batch)."""
    sel = targets > 0
    pos = (h * table[targets]).sum(-1)[sel].float()                       # [P]
    neg = torch.einsum("btd,bnd->btn", h, table[negatives])[sel].float()  # [P, N]
    valid = (negatives > 0).unsqueeze(1).expand(-1, targets.shape[1], -1)[sel]
    return pos, neg.masked_fill(~valid, float("-inf")), valid
