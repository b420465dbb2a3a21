"""Item encoders: where SASRec's item vectors come from.

Every encoder is an ``nn.Module`` whose ``forward()`` takes no input and returns the whole item table
``[num_items, hidden]`` (row ``i`` = dataset item index ``i``; SASRec adds the padding row itself).
It is called once per training step / once per evaluation, so the feature computation is batched
over all items and never repeated per sequence.

Frozen features arrive as ``[num_items, L, D]`` (an ``[num_items, D]`` array is read as ``L = 1``);
``layers`` are indices into ``L`` (negative indices count from the end; ``None`` = all layers). They
are converted to float32, optionally standardised per layer (centred per dimension over items and
divided by the layer's overall standard deviation: LVLM hidden states of different depths differ in
scale by orders of magnitude; a per-layer scalar keeps the geometry within a layer), and stored as a
non-persistent buffer: it moves with ``model.to(device)`` once, gets no gradient, is not a parameter
and is not written into checkpoints (features are passed in again when a model is rebuilt).

Strategies (``e`` = trainable ID embedding, ``h`` = feature vector, ``v = ReLU(W h)``):

=========  ===========================================================================
id         ``e``
replace    ``MLP(mean of chosen layers)`` -- no ID table
init       ``e`` initialised from the PCA of the mean chosen layer, then a plain ID table
caption    gate fusion of ``e`` with a frozen caption embedding (usually ``L = 1``)
add        ``e + v``
concat     ``Linear([e; v])``
gate       ``g * e + (1 - g) * v``, ``g = sigmoid(W_g [e; v])`` per dimension
dff        gate fusion with ``h = sum_l softmax(w)_l h_l`` over the chosen layers, ``w`` init 0
           (uniform) or from per-layer usefulness scores (``layer_scores``)
=========  ===========================================================================

All trainable item vectors start at the same scale (``init_std``, default ``hidden ** -0.5``): the
ID table is drawn with that std and ``W`` is initialised so that ``v`` has that root-mean-square,
so neither side of a fusion dominates at the start.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .strategies import FEATURE_STRATEGIES, GATED_STRATEGIES, STRATEGIES  # noqa: F401 - re-exported
from .. import cpu_kernels


def default_init_std(hidden: int) -> float:
    """Std of the ID embedding (and target RMS of projected features)."""
    return hidden ** -0.5


def resolve_layers(num_layers: int, layers: Sequence[int] | None) -> list[int]:
    """Normalise layer indices (``None`` = all, negatives from the end); reject duplicates / range errors."""
    if layers is None:
        return list(range(num_layers))
    out = []
    for layer in layers:
        layer = int(layer)
        if not -num_layers <= layer < num_layers:
            raise ValueError(f"layer {layer} out of range for features with {num_layers} layers")
        out.append(layer % num_layers)
    if not out:
        raise ValueError("layers must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate layers in {list(layers)}")
    return out


def prepare_features(features, num_items: int, layers: Sequence[int] | None = None,
                     normalize: bool = True) -> tuple[torch.Tensor, list[int]]:
    """Select layers of ``features`` and return ``(float32 tensor [L_sel, num_items, D], layer ids)``.

    Layer-major layout so a weighted sum over layers is one matrix-vector product. The caller's array
    is never modified. With ``normalize``, each selected layer is centred per dimension and divided by
    its overall std (a constant layer stays zero).
    """
    if features is None:
        raise ValueError("this strategy needs features")
    if isinstance(features, torch.Tensor):
        feats = features.detach().cpu()
    else:
        feats = torch.from_numpy(np.asarray(features))
    if feats.dim() == 2:
        feats = feats.unsqueeze(1)
    if feats.dim() != 3:
        raise ValueError(f"features must be [num_items, L, D] or [num_items, D], got {tuple(feats.shape)}")
    if feats.shape[0] != num_items:
        raise ValueError(f"features have {feats.shape[0]} rows, dataset has {num_items} items")
    chosen = resolve_layers(feats.shape[1], layers)
    out = torch.empty(len(chosen), num_items, feats.shape[2], dtype=torch.float32)
    for j, layer in enumerate(chosen):  # one layer at a time: bounded extra memory
        x = feats[:, layer].to(torch.float32, copy=True)
        if not torch.isfinite(x).all():
            raise ValueError(f"features of layer {layer} contain NaN or inf")
        if normalize:
            x -= x.mean(dim=0, keepdim=True)
            std = x.std()
            if std > 0:
                x /= std
        out[j] = x
    return out, chosen


def quantize_int8(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q int8 [L, N, D], scale float32 [L, D])`` with ``feats ~= q * scale[:, None]``: one scale per layer and
    dimension, ``max_i |feats[l, i, d]| / 127``, values rounded to nearest.

    Why per layer and dimension: LVLM hidden states have a few dimensions tens of times wider than the rest (on
    SmolLM2's 31 layers of MicroLens titles, after :func:`prepare_features`, a dimension's maximum is 8 standard
    deviations at the median and 25 at most); one scale per layer would spend the 8 bits on those. The error is
    ~2.7 % of the values' norm per entry (bfloat16: 0.17 %), and the model sees it through the mix only: DFF's
    buffer, the one that is read whole twice a step. A dimension that is 0 for every item keeps scale 1."""
    layers, n, dim = feats.shape
    scale = feats.abs().amax(dim=1).float() / 127.0                       # [L, D]
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.empty(layers, n, dim, dtype=torch.int8, device=feats.device)
    for j in range(layers):  # one layer at a time: bounded extra memory
        q[j] = torch.round(feats[j].float() / scale[j]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def _standardize_(x: torch.Tensor) -> torch.Tensor:
    std = x.std()
    return x.div_(std) if std > 0 else x


def _init_linear(lin: nn.Linear, out_std: float, in_rms: float = 1.0) -> nn.Linear:
    """Normal init such that outputs have ~``out_std`` for inputs of root-mean-square ``in_rms``."""
    nn.init.normal_(lin.weight, std=out_std / (max(in_rms, 1e-12) * math.sqrt(lin.in_features)))
    if lin.bias is not None:
        nn.init.zeros_(lin.bias)
    return lin


class ItemEncoder(nn.Module):
    """Base class. ``forward() -> [num_items, hidden]``."""

    strategy = "base"

    def __init__(self, num_items: int, hidden: int, init_std: float | None = None):
        super().__init__()
        self.num_items = num_items
        self.hidden = hidden
        self.init_std = default_init_std(hidden) if init_std is None else init_std
        self._last_gate: torch.Tensor | None = None

    def layer_weights(self) -> dict[int, float] | None:
        """``{layer index in the stored feature tensor: softmax weight}`` (DFF only)."""
        return None

    def gate_mean(self) -> float | None:
        """Mean gate value ``g`` (weight of the ID side) of the last forward, for gated strategies."""
        return None if self._last_gate is None else float(self._last_gate)

    def _new_id_table(self) -> nn.Parameter:
        return nn.Parameter(torch.randn(self.num_items, self.hidden) * self.init_std)


class IDEncoder(ItemEncoder):
    """Trainable ID embedding only (plain SASRec)."""

    strategy = "id"

    def __init__(self, num_items: int, hidden: int, init_std: float | None = None):
        super().__init__(num_items, hidden, init_std)
        self.emb = self._new_id_table()

    def forward(self) -> torch.Tensor:
        return self.emb


class InitEncoder(IDEncoder):
    """ID table whose initial values are the PCA of the (mean chosen layer) features, rescaled to
    ``init_std``; afterwards a plain ID table. Features are not kept."""

    strategy = "init"

    def __init__(self, num_items: int, hidden: int, features, layers=None, normalize: bool = True,
                 init_std: float | None = None):
        super().__init__(num_items, hidden, init_std)
        feats, self.layers = prepare_features(features, num_items, layers, normalize)
        x = feats.mean(dim=0).double()
        del feats
        x -= x.mean(dim=0, keepdim=True)
        # PCA via the D x D covariance (deterministic, cheap for D in the hundreds/thousands).
        evals, evecs = torch.linalg.eigh(x.T @ x)
        k = min(hidden, x.shape[1])
        top = evecs[:, torch.argsort(evals, descending=True)[:k]]
        # Fix the sign of each component (eigh's sign is arbitrary): largest |loading| positive.
        signs = torch.sign(top.gather(0, top.abs().argmax(dim=0, keepdim=True)))
        proj = x @ (top * signs)
        table = torch.empty(num_items, hidden, dtype=torch.float64)
        table[:, :k] = proj
        std = proj.std() if proj.numel() > 1 else torch.tensor(0.0, dtype=torch.float64)
        if std > 0:
            table[:, :k] /= std
        else:  # constant features: nothing to learn from, fall back to random
            table[:, :k] = torch.randn(num_items, k, dtype=torch.float64)
        if k < hidden:  # fewer feature dims than hidden: fill the rest randomly
            table[:, k:] = torch.randn(num_items, hidden - k, dtype=torch.float64)
        with torch.no_grad():
            self.emb.copy_((table * self.init_std).float())


class ReplaceEncoder(ItemEncoder):
    """Item vector = MLP(mean of chosen layers); no ID table at all."""

    strategy = "replace"

    def __init__(self, num_items: int, hidden: int, features, layers=None, normalize: bool = True,
                 init_std: float | None = None):
        super().__init__(num_items, hidden, init_std)
        feats, self.layers = prepare_features(features, num_items, layers, normalize)
        self.register_buffer("feats", _standardize_(feats.mean(dim=0)) if normalize else feats.mean(dim=0),
                             persistent=False)
        dim = self.feats.shape[1]
        self.adapter = nn.Sequential(
            _init_linear(nn.Linear(dim, hidden), 1.0, self._rms()),
            nn.LayerNorm(hidden),
            nn.GELU(),
            _init_linear(nn.Linear(hidden, hidden), self.init_std, 0.6),
        )

    def _rms(self) -> float:
        return float(self.feats.pow(2).mean().sqrt())

    def forward(self) -> torch.Tensor:
        return self.adapter(self.feats)


class FusionEncoder(ItemEncoder):
    """Shared parts of ID + feature fusion: ID table ``e``, projection ``v = ReLU(W h)``."""

    def __init__(self, num_items: int, hidden: int, features, layers=None, normalize: bool = True,
                 init_std: float | None = None, feature_dtype: torch.dtype = torch.float32):
        super().__init__(num_items, hidden, init_std)
        self.emb = self._new_id_table()
        self._register_features(features, layers, normalize)
        # ReLU halves the second moment: pre-activation std sqrt(2)*init_std gives RMS(v) = init_std.
        self.proj = _init_linear(nn.Linear(self.feat_dim, hidden), math.sqrt(2) * self.init_std,
                                 self._feature_rms())
        # bfloat16 halves the buffer (a 7B LVLM's 33 layers x 4096 over 20,000 items: 10.8 -> 5.4 GB) and the bytes
        # each step reads; it is mixed and projected in its dtype, and the item vectors leave in float32 (forward).
        # int8 (DFF only) quarters it, with a scale per layer and dimension (quantize_int8); it mixes into bfloat16
        if feature_dtype == torch.int8:
            if self.feats.dim() != 3:
                raise ValueError(f"an int8 feature buffer is for DFF's layer stack, not strategy {self.strategy!r}")
            q, scale = quantize_int8(self.feats)
            self.feats = q
            self.register_buffer("feat_scale", scale, persistent=False)
        else:
            self.feats = self.feats.to(feature_dtype)

    # single feature vector per item (mean of the chosen layers); DFF overrides these three
    def _register_features(self, features, layers, normalize):
        feats, self.layers = prepare_features(features, self.num_items, layers, normalize)
        mean = feats.mean(dim=0)
        del feats
        self.register_buffer("feats", _standardize_(mean) if normalize else mean, persistent=False)

    @property
    def feat_dim(self) -> int:
        return self.feats.shape[-1]

    def _feature_rms(self) -> float:
        return float(self.feats.float().pow(2).mean().sqrt())

    def item_features(self) -> torch.Tensor:
        """``[num_items, feat_dim]`` in the buffer's dtype."""
        return self.feats

    def fuse(self, e: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self) -> torch.Tensor:
        x = self.item_features()
        # in the buffer's dtype: a bfloat16 buffer is projected in bfloat16 (19,220 x 576 x 64 three times a step),
        # the item vectors leave in float32
        v = F.relu(F.linear(x, self.proj.weight.to(x.dtype), self.proj.bias.to(x.dtype))).float()
        return self.fuse(self.emb, v)


class AddEncoder(FusionEncoder):
    strategy = "add"

    def fuse(self, e, v):
        return e + v


class ConcatEncoder(FusionEncoder):
    strategy = "concat"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mix = _init_linear(nn.Linear(2 * self.hidden, self.hidden), self.init_std, self.init_std)

    def fuse(self, e, v):
        return self.mix(torch.cat([e, v], dim=-1))


class GateEncoder(FusionEncoder):
    """``g * e + (1 - g) * v`` with a per-dimension gate ``g = sigmoid(W_g [e; v])`` (starts near 0.5)."""

    strategy = "gate"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = _init_linear(nn.Linear(2 * self.hidden, self.hidden), 1.0, self.init_std)

    def fuse(self, e, v):
        g = torch.sigmoid(self.gate(torch.cat([e, v], dim=-1)))
        self._last_gate = g.detach().mean()
        return torch.lerp(v, e, g)   # g * e + (1 - g) * v in one op (and its backward in fewer)


class CaptionEncoder(GateEncoder):
    """Gate fusion of the ID embedding with a frozen caption (sentence) embedding."""

    strategy = "caption"


def layer_logits_from_scores(scores: Sequence[float] | None, num_layers: int) -> torch.Tensor:
    """Initial DFF logits ``w``: zeros (uniform softmax) without scores, else the scores' z-scores.

    z-scores make the start independent of the score's unit: a layer one standard deviation above the mean
    starts with ``e`` times the weight of an average one, so a useful layer is favoured but no layer is
    switched off before training has seen any data. Equal scores give the uniform start.
    """
    if scores is None:
        return torch.zeros(num_layers)
    s = torch.as_tensor([float(v) for v in scores], dtype=torch.float64)
    if s.shape != (num_layers,) or not torch.isfinite(s).all():
        raise ValueError(f"layer_scores must be {num_layers} finite numbers (one per chosen layer), got {list(scores)}")
    std = s.std() if num_layers > 1 else torch.tensor(0.0, dtype=torch.float64)
    return ((s - s.mean()) / std if std > 0 else torch.zeros_like(s)).float()


class LayerMix(torch.autograd.Function):
    """``a [L] -> (a @ feats.view(L, N*D)).view(N, D)`` in the buffer's dtype, only ``a`` getting a gradient.

    Why its own backward: the frozen buffer is read twice per training step (forward mix, and ``d a = feats @ g``),
    0.69 GB in bfloat16 for 31 SmolLM2 layers over 19,220 items, and this is memory-bound work: the floor is the
    time to read the buffer twice. In float32, ``torch.mv`` reads it at full speed; torch's autograd would use a
    transposed product ~35 % slower. In bfloat16, a CPU with the compiled loops reads it at memory speed both ways
    (:func:`dff_core.cpu_kernels.mix_bf16`, :func:`~dff_core.cpu_kernels.bf16_layer_dots`). Without them (a GPU, no
    ``libgomp``) both products are slow (oneDNN has no fast kernel for a one-column product: ~7 GB/s against the
    forward's ~14 GB/s on 2 cores), so the backward's product is made ``BLOCKS`` columns wide: ``feats`` as
    ``[L * K, N*D / K]`` times ``g`` as ``[N*D / K, K]`` gives every layer's ``K`` partial sums on the diagonal of
    each ``K x K`` block, read off and summed in float32. ``K`` times the (negligible) arithmetic, one read of the
    buffer at full speed: the backward's time halves (measured, ``K = 8``)."""

    BLOCKS = 8

    @staticmethod
    def forward(ctx, a: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        L, N, D = feats.shape
        ctx.save_for_backward(feats)
        if feats.dtype == torch.bfloat16 and feats.device.type == "cpu" and cpu_kernels.usable():
            return cpu_kernels.mix_bf16(feats.view(L, N * D), a).view(N, D)   # ~29 ms where oneDNN takes ~40
        return torch.mm(a.unsqueeze(0).to(feats.dtype), feats.view(L, N * D)).view(N, D)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (feats,) = ctx.saved_tensors
        L, N, D = feats.shape
        flat, g = feats.view(L, N * D), grad.reshape(-1).to(feats.dtype)
        if feats.dtype == torch.float32:
            return torch.mv(flat, g), None
        if feats.device.type == "cpu" and cpu_kernels.usable():
            return cpu_kernels.bf16_layer_dots(flat, g), None   # ~29 ms, float32 sums (below: ~34, bfloat16 partials)
        k = next(b for b in (LayerMix.BLOCKS, 4, 2, 1) if (N * D) % b == 0)
        partial = torch.mm(flat.view(L * k, -1), g.view(k, -1).T)         # [L*K, K]
        return partial.view(L, k, k).diagonal(dim1=1, dim2=2).float().sum(1), None


class LayerMixQ8(torch.autograd.Function):
    """``(a [L], q int8 [L, N, D], scale [L, D]) -> bfloat16 [N, D] = sum_l a[l] * scale[l] * q[l]``, only ``a``
    getting a gradient: :class:`LayerMix` over an int8 buffer (:func:`quantize_int8`), half the bytes of bfloat16.

    Why: the mix is memory-bound (read the buffer forward, read it again for ``d a``). On a CPU the compiled loops
    of :mod:`dff_core.cpu_kernels` widen int8 to float32 inside the loop (~19 + ~23 ms a step for 31 SmolLM2 layers
    over 19,220 items, against ~29 + ~29 ms from a bfloat16 buffer); elsewhere (a GPU, a CPU without ``libgomp``)
    torch does it a layer at a time. Sums in float32; the output is rounded to bfloat16 once."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(q, scale)
        coef = a.float().unsqueeze(1) * scale                                  # [L, D]
        if q.device.type == "cpu" and cpu_kernels.usable():
            return cpu_kernels.mix_q8(q, coef)
        h = torch.zeros(q.shape[1:], dtype=torch.float32, device=q.device)
        for layer in range(q.shape[0]):
            h.addcmul_(q[layer].float(), coef[layer])
        return h.to(torch.bfloat16)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        q, scale = ctx.saved_tensors
        if q.device.type == "cpu" and cpu_kernels.usable():
            sums = cpu_kernels.q8_layer_sums(q, grad)
        else:
            g = grad.to(torch.bfloat16).float()     # what the CPU loops read: the output's dtype
            sums = torch.stack([(q[layer].float() * g).sum(0) for layer in range(q.shape[0])])
        return (sums * scale).sum(1), None, None


class DFFEncoder(GateEncoder):
    """Dual Feature Fusion: learned softmax mixture of the chosen layers, then gate fusion with IDs."""

    strategy = "dff"

    def __init__(self, *args, layer_scores: Sequence[float] | None = None, **kwargs):
        self._layer_scores = layer_scores
        super().__init__(*args, **kwargs)

    def _register_features(self, features, layers, normalize):
        feats, self.layers = prepare_features(features, self.num_items, layers, normalize)
        self.register_buffer("feats", feats, persistent=False)  # [L, N, D]
        self.layer_logits = nn.Parameter(layer_logits_from_scores(self._layer_scores, len(self.layers)))

    def _feature_rms(self) -> float:
        with torch.no_grad():
            return float(self.item_features().pow(2).mean().sqrt())

    def item_features(self) -> torch.Tensor:
        # one [1, L] x [L, N*D] product over the buffer, in its dtype (float32, or bfloat16 to halve the bytes read;
        # int8 with its scales halves them again)
        a = torch.softmax(self.layer_logits, dim=0)
        if self.feats.dtype == torch.int8:
            return LayerMixQ8.apply(a, self.feats, self.feat_scale)
        return LayerMix.apply(a, self.feats)

    def layer_weights(self) -> dict[int, float]:
        a = torch.softmax(self.layer_logits.detach().float(), dim=0).cpu().tolist()
        return {layer: w for layer, w in zip(self.layers, a)}


_ENCODERS = {cls.strategy: cls for cls in (IDEncoder, ReplaceEncoder, InitEncoder, CaptionEncoder,
                                           AddEncoder, ConcatEncoder, GateEncoder, DFFEncoder)}


def build_item_encoder(strategy: str, num_items: int, hidden: int, features=None,
                       layers: Sequence[int] | None = None, *, normalize: bool = True,
                       init_std: float | None = None,
                       layer_scores: Sequence[float] | None = None,
                       feature_dtype: torch.dtype = torch.float32) -> ItemEncoder:
    """Create the encoder for ``strategy`` (one of ``STRATEGIES``).

    ``features``: ``np.ndarray | torch.Tensor`` ``[num_items, L, D]`` (or ``[num_items, D]``), needed
    by every strategy but ``id`` (ignored there). ``layers``: indices into ``L``; ``None`` = all.
    Single-vector strategies use the mean of the chosen layers; ``dff`` learns the mixture, starting from
    uniform weights or, with ``layer_scores`` (one per chosen layer, higher = more useful), from their z-scores.
    ``feature_dtype``: the dtype of the fusion strategies' frozen feature buffer (``bfloat16`` halves it).
    """
    if strategy not in _ENCODERS:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if strategy == "id":
        return IDEncoder(num_items, hidden, init_std)
    if features is None:
        raise ValueError(f"strategy {strategy!r} needs features")
    extra = {"layer_scores": layer_scores} if strategy == "dff" else {}
    if issubclass(_ENCODERS[strategy], FusionEncoder):
        extra["feature_dtype"] = feature_dtype
    return _ENCODERS[strategy](num_items, hidden, features, layers, normalize=normalize, init_std=init_std, **extra)
