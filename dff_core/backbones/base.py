"""The backbone adapter protocol: inputs, pooling and the ``Backbone`` base class.

Every adapter turns a batch of :class:`ItemInput` into ``[B, num_layers, dim]`` float32 in ONE forward pass
with ``output_hidden_states=True``: layer 0 is the embedding output, layer ``l`` the output of decoder layer
``l`` (for the vision-only EfficientNet: its stages). Each layer is pooled over token positions chosen by
the pooling; the attention mask always excludes padding, so a batch gives the same numbers as its items
one by one.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

POOLINGS = ("video_mean", "text_mean", "all_mean", "last")
POOLING_HELP = {
    "video_mean": "mean over the video/image token positions only",
    "text_mean": "mean over the text positions (prompt and title; no vision or padding tokens)",
    "all_mean": "mean over every non-padding position",
    "last": "the last non-padding token",
}


class BackboneInputError(ValueError):
    """An item this backbone cannot encode as asked (e.g. ``video_mean`` for an item without frames)."""

    def __init__(self, message: str, item_id: str | None = None):
        super().__init__(message)
        self.item_id = item_id


@dataclass
class ItemInput:
    """One item for a backbone. ``frames``: uint8 ``[n, h, w, 3]`` RGB (video frames or a repeated cover);
    ``frame_times``/``duration`` (seconds) are optional and used by families whose prompts carry timestamps."""
    item_id: str
    title: str | None = None
    frames: np.ndarray | None = None
    frame_times: np.ndarray | None = field(default=None, repr=False)
    duration: float | None = None


class Backbone(ABC):
    """A frozen model that yields every layer's pooled hidden state for a batch of items."""

    family: str = ""
    spec: str = ""
    num_layers: int = 0           # hidden states returned: embedding output + each layer
    dim: int = 0
    inputs: tuple[str, ...] = ()  # of "frames", "title", "cover"
    poolings: tuple[str, ...] = ()
    default_pooling: str = "all_mean"
    can_caption: bool = False
    layer_names: list[str] | None = None
    device: str = "cpu"
    # compute precision (see ``resolve_precision``): every family computes in float32 or bfloat16; int8 dynamic
    # quantisation is offered where ``quantizable`` (the decoder-LM families: their nn.Linear layers)
    quantizable: bool = False
    cpu_auto_dtype: str = "float32"   # what ``--compute-dtype auto`` picks on a CPU with native bfloat16
    default_batch_size: int = 8       # items per forward pass when a request names none
    quantize: str = "none"

    def quantize_target(self):
        """The module whose ``nn.Linear`` layers int8 quantisation replaces (the language model)."""
        raise NotImplementedError(f"{self.family} has no int8 path")

    def apply_int8(self) -> None:
        """Dynamic int8 quantisation of the language model's linear layers (weights int8 per output channel,
        activations quantised per batch at run time). CPU only; the model must compute in float32."""
        import warnings

        import torch
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        target = self.quantize_target()
        with warnings.catch_warnings():  # torch.ao's notice that eager quantisation moves to torchao
            warnings.simplefilter("ignore")
            quantize_dynamic(target, {torch.nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
        self.quantize = "int8"

    @abstractmethod
    def encode(self, batch: Sequence[ItemInput], pooling: str) -> np.ndarray:
        """``[len(batch), num_layers, dim]`` float32, in the order of ``batch``."""

    def caption(self, batch: Sequence[ItemInput], max_new_tokens: int = 32) -> list[str]:
        raise NotImplementedError(f"{self.family} cannot write captions")

    def check_pooling(self, pooling: str) -> None:
        if pooling not in self.poolings:
            raise ValueError(f"backbone {self.family!r} pools by {', '.join(self.poolings)}; not {pooling!r}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r}: {self.num_layers} layers x {self.dim}>"


def sort_by_length(lengths: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Order (longest first) and its inverse, to batch similar lengths and restore the caller's order."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return order, inverse


def pooling_weights(pooling: str, attention_mask, vision_mask=None, text_mask=None, item_ids=None):
    """``[B, T]`` float weights selecting the positions ``pooling`` averages (rows sum to 1).

    ``vision_mask``: True at video/image token positions; ``text_mask``: True at text positions (default:
    attended and not vision). Raises :class:`BackboneInputError` when a row selects nothing."""
    import torch

    att = attention_mask.bool()
    if pooling == "all_mean":
        sel = att
    elif pooling == "text_mean":
        sel = att & (text_mask.bool() if text_mask is not None else
                     (~vision_mask.bool() if vision_mask is not None else torch.ones_like(att)))
    elif pooling == "video_mean":
        if vision_mask is None:
            raise BackboneInputError("this backbone has no video tokens to pool")
        sel = att & vision_mask.bool()
    elif pooling == "last":
        # last attended position of each row (works for left and right padding)
        pos = torch.arange(att.shape[1], device=att.device).expand_as(att)
        last = torch.where(att, pos, torch.full_like(pos, -1)).max(dim=1).values
        sel = torch.zeros_like(att)
        sel[torch.arange(att.shape[0], device=att.device), last.clamp_min(0)] = True
    else:
        raise ValueError(f"unknown pooling {pooling!r}; one of {', '.join(POOLINGS)}")
    counts = sel.sum(dim=1)
    if bool((counts == 0).any()):
        row = int((counts == 0).nonzero()[0, 0])
        who = item_ids[row] if item_ids is not None else row
        what = "video/image" if pooling == "video_mean" else "text" if pooling == "text_mean" else "any"
        raise BackboneInputError(f"item {who}: no {what} tokens to pool ({pooling})", item_id=who)
    w = sel.float()
    return w / counts.clamp_min(1).unsqueeze(1).float()


def pool_layers(hidden_states, weights) -> np.ndarray:
    """Weighted sums over positions of each ``[B, T, D]`` layer -> ``[B, L, D]`` float32 numpy.
    Accumulates in float32 whatever the model's dtype (bfloat16/float16 hidden states never overflow here)."""
    import torch

    w = weights.float()
    out = torch.stack([torch.einsum("btd,bt->bd", h.float(), w.to(h.device)) for h in hidden_states], dim=1)
    return out.cpu().numpy().astype(np.float32, copy=False)


def resolve_device_dtype(device: str | None, dtype):
    """Torch device string and dtype: float32 on CPU, bfloat16 on accelerators unless asked otherwise."""
    import torch

    device = device or "cpu"
    if dtype is None:
        dtype = torch.float32 if device == "cpu" else torch.bfloat16
    elif isinstance(dtype, str):
        dtype = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
                 "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}[dtype]
    return device, dtype


COMPUTE_DTYPES = ("auto", "float32", "bfloat16")
QUANTIZATIONS = ("none", "int8")


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX): there bf16 beats float32; on
    other CPUs torch emulates it and it is slower."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(cls, device: str, compute_dtype: str | None = "auto", quantize: str | None = "none"
                      ) -> tuple[str, str]:
    """(compute dtype, quantisation) a backbone class runs with on ``device`` ("cpu" or "cuda:N").

    ``auto``: bfloat16 on CUDA; on a CPU with native bfloat16, the family's ``cpu_auto_dtype`` (bfloat16 where
    measured to keep every layer's cosine to float32 >= 0.99 and run faster, see README "Fast path"), else
    float32. Raises ``ValueError`` (one line) for an unsupported combination."""
    family = getattr(cls, "family", "") or cls.__name__
    compute_dtype = (compute_dtype or "auto").strip().lower()
    quantize = (quantize or "none").strip().lower()
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"unknown compute dtype {compute_dtype!r}; use {' | '.join(COMPUTE_DTYPES)}")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantisation {quantize!r}; use {' | '.join(QUANTIZATIONS)}")
    on_cpu = str(device).startswith("cpu")
    if quantize == "int8":
        if not getattr(cls, "quantizable", False):
            raise ValueError(f"backbone {family!r} has no int8 path; --quantize int8 works for smollm2 and the "
                             "LVLM families (qwen2-vl, qwen2.5-vl, qwen3-vl, llava-onevision, smolvlm)")
        if not on_cpu:
            raise ValueError(f"--quantize int8 (torch dynamic quantisation) runs on the CPU only, not {device}; "
                             "use --device cpu or --quantize none")
        if compute_dtype == "bfloat16":
            raise ValueError("--quantize int8 computes in float32 (its int8 kernels take float32 activations); "
                             "use --compute-dtype float32 (or auto) with it, or bfloat16 without it")
        return "float32", "int8"
    if compute_dtype == "auto":
        if not on_cpu:
            compute_dtype = "bfloat16"
        else:
            compute_dtype = getattr(cls, "cpu_auto_dtype", "float32") if cpu_has_native_bf16() else "float32"
    return compute_dtype, quantize
