"""SASRec (Kang & McAuley, 2018) with a pluggable item encoder, in one file.

Index convention: sequences hold *model* indices, ``0`` = padding and ``i + 1`` = dataset item ``i``.
Sequences are LEFT-padded: the most recent item is always in the last column.

The item table ``[num_items + 1, hidden]`` (zero padding row + ``item_encoder()``) is computed once
per forward and used twice: as the input embedding (times ``sqrt(hidden)``, plus a learned positional
embedding, as in SASRec) and as the output matrix (scores = ``h_t . item_table[1:]^T``).

Attention is causal and ignores padded keys. A padded *query* row would then have no key at all and
softmax over an empty row gives NaN, so every position may always attend to itself: real positions
only see real items at or before them, padded positions see only themselves (their outputs are never
used). Positions are counted from the right (the newest item has position 0), so a sequence gets the
same output whatever width it is left-padded to; batches can be trimmed to their longest sequence.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .item_encoders import ItemEncoder


@dataclass
class SASRecConfig:
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    max_len: int = 50
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)


def keep_mask(shape: tuple[int, ...], p: float, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Dropout's mask, scaled: ``1 / (1 - p)`` where a value is kept, 0 where it is dropped (``p`` in steps of
    1/32,768). Why: torch's CPU dropout draws one Mersenne-Twister number per value (``bernoulli_``), ~2.5 ms for a
    1,024-user batch, seven times a step; here one 64-bit draw gives four 15-bit draws (bit 63 of ``random_()`` is
    always 0, so each 16-bit quarter is masked to 15 bits), 3x faster with its backward. Drawn from torch's
    global generator, so a seed and a checkpoint's RNG state reproduce it."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()
    draws = words.view(torch.int16)[:n].view(shape).bitwise_and_(0x7FFF)
    return draws.ge(round(p * 32768)).to(dtype).mul_(1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with :func:`keep_mask` on a CPU (a GPU keeps torch's own)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        return x * keep_mask(x.shape, self.p, x.device, x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        if cfg.hidden % cfg.heads:
            raise ValueError(f"hidden ({cfg.hidden}) must be divisible by heads ({cfg.heads})")
        self.heads = cfg.heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.hidden)
        self.out_drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``allowed``: bool ``[B, 1, T, T]``, True where query ``t`` may attend to key ``s``."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_drop(self.out(y.transpose(1, 2).reshape(B, T, C)))


class Block(nn.Module):
    """Pre-LN transformer block with SASRec's point-wise feed-forward (width = hidden)."""

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.hidden)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.hidden)
        self.ffn = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(), Dropout(cfg.dropout),
                                 nn.Linear(cfg.hidden, cfg.hidden), Dropout(cfg.dropout))

    def forward(self, x, allowed):
        x = x + self.attn(self.ln1(x), allowed)
        return x + self.ffn(self.ln2(x))


class SASRec(nn.Module):
    def __init__(self, cfg: SASRecConfig, item_encoder: ItemEncoder):
        super().__init__()
        if item_encoder.hidden != cfg.hidden:
            raise ValueError(f"encoder hidden {item_encoder.hidden} != model hidden {cfg.hidden}")
        self.cfg = cfg
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.blocks))
        self.pos = nn.Embedding(cfg.max_len, cfg.hidden)
        self.emb_drop = Dropout(cfg.dropout)
        self.ln_f = nn.LayerNorm(cfg.hidden)
        self.apply(self._init_weights)  # before attaching the encoder: encoders initialise themselves
        self.item_encoder = item_encoder

    @staticmethod
    def _init_weights(m: nn.Module):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    @property
    def num_items(self) -> int:
        return self.item_encoder.num_items

    def item_table(self) -> torch.Tensor:
        """``[num_items + 1, hidden]``: zero padding row, then the encoder's item vectors."""
        items = self.item_encoder()
        return torch.cat([items.new_zeros(1, items.shape[1]), items], dim=0)

    def forward(self, seqs: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states ``[B, T, hidden]`` for left-padded model-index sequences ``[B, T]``."""
        if table is None:
            table = self.item_table()
        B, T = seqs.shape
        if T > self.cfg.max_len:
            raise ValueError(f"sequence width {T} exceeds max_len {self.cfg.max_len}")
        valid = seqs > 0
        x = F.embedding(seqs, table) * math.sqrt(self.cfg.hidden)
        pos = torch.arange(T - 1, -1, -1, device=seqs.device)  # newest item = position 0
        x = (x + self.pos(pos)) * valid.unsqueeze(-1)
        x = self.emb_drop(x)
        allowed = self.attention_mask(valid)
        for block in self.blocks:
            x = block(x, allowed)
        return self.ln_f(x)

    @staticmethod
    def attention_mask(valid: torch.Tensor) -> torch.Tensor:
        """bool ``[B, 1, T, T]`` from the non-padding mask ``valid [B, T]``: query ``t`` may attend to
        key ``s`` iff ``s <= t`` and (``s`` is a real item or ``s == t``). The diagonal is always on, so
        no row is fully masked (which would give NaN in a plain softmax)."""
        T = valid.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=valid.device).tril()
        eye = torch.eye(T, dtype=torch.bool, device=valid.device)
        return (causal & (valid.unsqueeze(1) | eye)).unsqueeze(1)

    @staticmethod
    def scores(h: torch.Tensor, table: torch.Tensor, items_t: torch.Tensor | None = None) -> torch.Tensor:
        """Scores over all real items (column ``i`` = dataset item ``i``). ``items_t``: ``table[1:].T`` made
        contiguous, for callers that score many batches against one table: on a CPU, oneDNN's product runs ~1.5x
        faster from it than from the transposed view (same values)."""
        return h @ (table[1:].T if items_t is None else items_t)

    def predict(self, seqs: torch.Tensor, table: torch.Tensor | None = None,
                items_t: torch.Tensor | None = None) -> torch.Tensor:
        """Next-item scores ``[B, num_items]`` from the last position of each sequence (``items_t``: see
        :meth:`scores`)."""
        if table is None:
            table = self.item_table()
        return self.scores(self(seqs, table)[:, -1], table, items_t)
