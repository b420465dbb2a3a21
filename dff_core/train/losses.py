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
* :func:`gbce_loss` -- gSASRec's generalised binary cross-entropy (Petrov & Macdonald, RecSys 2023): a sigmoid
  loss over the positive and ``k`` sampled negatives whose positive term is raised to the power
  ``beta = alpha (t (1 - 1/alpha) + 1/alpha)``, ``alpha = k / (num_items - 1)``. Why: sampling ``k`` of
  ``N - 1`` negatives makes a plain BCE model over-confident about the positive; ``t`` in ``[0, 1]``
  calibrates that back (``t = 0``: ``beta = 1``, plain BCE; ``t = 1``: ``beta = alpha``, fully calibrated).
  The paper reports full-softmax quality with ``k = 256, t = 0.75``; ``bench/bench_time_to_quality.py``
  measures it here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# rows of the logit block: 256 x 19,221 items x 4 bytes = 20 MB, inside this CPU's L3 and small next to any batch
LSE_CHUNK = 256


class ChunkedLogSumExp(torch.autograd.Function):
    """``logsumexp(h @ W.T, dim=1)`` for ``h [P, d]`` and ``W [N, d]``, block by block (see module docstring).

    ``matmul_dtype`` (``torch.float32`` or ``torch.bfloat16``) is the dtype of the products' operands and of the
    kept exponentials ``e = exp(z - max_z)`` (in ``[0, 1]``); maxima, sums and logs stay in float32. Backward is
    two products over the kept ``e``, with the per-row factor ``grad / sum(e)`` applied to the small operands:
    ``dh = (e @ W) * f``, ``dW = e.T @ (h * f)``. Nothing is recomputed and no logit block is re-allocated."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, matmul_dtype: torch.dtype, chunk: int) -> torch.Tensor:
        hm, wm = h.detach().to(matmul_dtype), w.detach().to(matmul_dtype)
        P, N = h.shape[0], w.shape[0]
        kept = torch.empty(P, N, dtype=matmul_dtype, device=h.device)
        total = torch.empty(P, dtype=torch.float32, device=h.device)     # sum(e) per row
        lse = torch.empty(P, dtype=torch.float32, device=h.device)
        z32 = kept if matmul_dtype == torch.float32 else torch.empty(min(chunk, max(P, 1)), N, device=h.device)
        for s in range(0, P, chunk):
            rows = slice(s, min(s + chunk, P))
            z = torch.mm(hm[rows], wm.T, out=kept[rows])
            if z32 is not kept:
                z = z32[:z.shape[0]].copy_(z)
            m = z.amax(dim=1, keepdim=True)
            total[rows] = z.sub_(m).exp_().sum(dim=1)
            lse[rows] = total[rows].log() + m.squeeze(1)
            if z32 is not kept:
                kept[rows] = z
        ctx.save_for_backward(hm, wm, kept, total)
        ctx.dtypes = (h.dtype, w.dtype)
        return lse

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        hm, wm, kept, total = ctx.saved_tensors
        f = (grad.float() / total).unsqueeze(1)                          # [P, 1]
        grad_h = (kept @ wm).float().mul_(f)
        grad_w = (kept.T @ (hm.float() * f).to(hm.dtype)).float()
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
