"""Shared machinery of the LVLM adapters (Qwen2/2.5/3-VL, LLaVA-OneVision, SmolVLM) through ``transformers``.

Why a video processor of our own: transformers 5 implements every video processor on torchvision, which is
not installable here, so ``AutoProcessor.from_pretrained`` fails for all video-capable families. Each family
module therefore subclasses :class:`TorchVideoProcessor` (resize / rescale / normalize / patchify in plain
torch, same numbers of tokens and the same tensor layout as the family's own class) and the processor is
assembled by hand from its parts: the tokenizer (``AutoTokenizer``), the family's PIL image processor, our
video processor, the checkpoint's chat template and processor options. The family's own ``*Processor``
class then expands the video placeholder exactly as upstream (timestamps, per-frame wrappers), so prompts
match what the model was trained on. The same path loads hub ids, local checkpoints and the tiny random
checkpoints of :mod:`dff_core.backbones.tiny`.

Every item is passed as a video: ``ItemInput.frames`` (uint8 ``[n, h, w, 3]``); an item with only a cover
arrives as a 1-frame (or repeated-cover) video, so ``video_mean`` means the same thing for every item.
"""
from __future__ import annotations

import inspect
import math
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from .base import Backbone, BackboneInputError, ItemInput, pool_layers, pooling_weights, resolve_device_dtype

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]



@lru_cache(maxsize=None)
def with_transformers_mixin(cls: type) -> type:
    """``cls`` (a :class:`TorchVideoProcessor` subclass) mixed with transformers' ``VideoProcessorMixin``
    (``from_pretrained``, ``to_dict``, ``save_pretrained``), built on first use.

    Why not subclass the mixin directly: importing it imports transformers and torch (seconds), and this module
    is imported whenever the registry lists its families (the dashboard's Extract and Home pages), which must
    stay fast. So the family classes are plain Python until a model is loaded. The result keeps ``cls``'s name
    and its methods come first (``cls`` before the mixin in the MRO), exactly as a direct subclass."""
    import transformers
    from transformers import processing_utils
    from transformers.video_processing_utils import VideoProcessorMixin

    # ProcessorMixin checks sub-processors against ``transformers.VideoProcessorMixin``, which the package
    # only exports when torchvision is installed: export the (torchvision-free) mixin so the check passes.
    for module in (transformers, getattr(processing_utils, "transformers_module", None)):
        if module is not None and not hasattr(module, "VideoProcessorMixin"):
            setattr(module, "VideoProcessorMixin", VideoProcessorMixin)
    if issubclass(cls, VideoProcessorMixin):
        return cls
    return type(cls.__name__, (cls, VideoProcessorMixin), {"__module__": cls.__module__,
                                                            "__qualname__": cls.__qualname__})


def video_metadata(item: ItemInput, n: int):
    """``VideoMetadata`` for ``n`` pre-sampled frames: timestamps from ``frame_times`` when known, else spread
    uniformly over ``duration``, else one frame per second. Families that print timestamps (Qwen3-VL,
    SmolVLM) or scale temporal positions by the frame rate (Qwen2.5-VL) read it."""
    from transformers.video_utils import VideoMetadata

    times = None
    if item.frame_times is not None and len(item.frame_times) == n:
        times = np.asarray(item.frame_times, dtype=np.float64)
    elif item.duration and item.duration > 0:
        times = (np.arange(n) + 0.5) * float(item.duration) / n
    if times is None:
        return VideoMetadata(total_num_frames=n, fps=1.0, frames_indices=list(range(n)), duration=float(n),
                             height=None, width=None)
    fps = 100.0  # timestamps on a 10 ms grid, as frame indices of a nominal 100 fps stream
    duration = float(item.duration) if item.duration else float(times[-1]) + 1.0
    indices = [int(round(t * fps)) for t in times]
    return VideoMetadata(total_num_frames=max(indices[-1] + 1, n), fps=fps, frames_indices=indices, duration=duration)


class TorchVideoProcessor:
    """A video processor in plain torch. Subclasses set the family defaults and implement ``_videos``;
    :func:`with_transformers_mixin` makes the class that is instantiated (``from_pretrained``, ``save_pretrained``).

    Config keys from the checkpoint (``video_preprocessor_config.json``, the nested ``processor_config.json``
    or, for older checkpoints, ``preprocessor_config.json``) become attributes, as in transformers."""

    hf_class = ""  # the family's transformers class, written to saved configs so upstream loaders accept them
    model_input_names = ["pixel_values_videos"]
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    rescale_factor = 1 / 255
    do_rescale = True
    do_normalize = True
    do_resize = True
    do_sample_frames = False
    num_frames = None
    fps = None
    return_metadata = False

    def __call__(self, videos, **kwargs):
        return self.preprocess(videos, **kwargs)

    def preprocess(self, videos, video_metadata=None, return_tensors=None, return_metadata=None, **kwargs):
        """``videos``: one or a list of ``[n, h, w, 3]`` uint8 arrays (or ``[n, 3, h, w]`` tensors)."""
        import torch
        from transformers.feature_extraction_utils import BatchFeature

        if isinstance(videos, np.ndarray) and videos.ndim == 4:
            videos = [videos]
        tensors = []
        for v in videos:
            t = v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(v)))
            if t.ndim != 4:
                raise ValueError(f"a video must be [frames, height, width, 3]; got shape {tuple(t.shape)}")
            if t.shape[-1] in (1, 3) and t.shape[1] not in (1, 3):
                t = t.permute(0, 3, 1, 2)
            if t.shape[1] == 1:
                t = t.expand(-1, 3, -1, -1)
            tensors.append(t.float())
        out = self._videos(tensors)
        want_metadata = self.return_metadata if return_metadata is None else return_metadata
        if want_metadata:
            if video_metadata is None:
                video_metadata = [video_metadata_default(len(t)) for t in tensors]
            elif not isinstance(video_metadata, (list, tuple)):
                video_metadata = [video_metadata]
            out["video_metadata"] = list(video_metadata)
        return BatchFeature(out, tensor_type=return_tensors, skip_tensor_conversion=["video_metadata"])

    def _videos(self, videos: list) -> dict:
        raise NotImplementedError

    # ---- helpers shared by the families
    def resize(self, video, height: int, width: int):
        """Bicubic with antialiasing (what the upstream torchvision path does), kept in [0, 255]."""
        import torch.nn.functional as F

        if tuple(video.shape[-2:]) == (height, width):
            return video
        return F.interpolate(video, size=(height, width), mode="bicubic", antialias=True,
                             align_corners=False).clamp_(0, 255)

    def normalize(self, video):
        import torch

        if self.do_rescale:
            video = video * float(self.rescale_factor)
        if self.do_normalize:
            mean = torch.tensor(self.image_mean, dtype=video.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.image_std, dtype=video.dtype).view(1, -1, 1, 1)
            video = (video - mean) / std
        return video

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["video_processor_type"] = self.hf_class or type(self).__name__
        for key in ("_valid_kwargs_names", "_processor_class"):
            d.pop(key, None)
        return d


def video_metadata_default(n: int):
    return video_metadata(ItemInput(item_id="", frames=None), n)


def _processor_kwargs(processor_cls, processor_dict: dict) -> dict:
    """The options of ``processor_dict`` that ``processor_cls.__init__`` takes (num_image_tokens, ...)."""
    params = inspect.signature(processor_cls.__init__).parameters
    skip = {"self", "image_processor", "tokenizer", "video_processor", "chat_template", "kwargs"}
    return {k: v for k, v in processor_dict.items() if k in params and k not in skip}


def build_processor(source: str, processor_cls, image_processor_cls, video_processor_cls, *, tokenizer=None):
    """The family's processor from a hub id or a local directory, without torchvision (see module doc)."""
    from transformers import AutoTokenizer

    processor_dict: dict = {}
    try:
        processor_dict, _ = processor_cls.get_processor_dict(source)
    except (OSError, ValueError):
        processor_dict = {}
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(source)
    image_processor = image_processor_cls.from_pretrained(source)
    video_processor = with_transformers_mixin(video_processor_cls).from_pretrained(source)
    chat_template = processor_dict.get("chat_template") or getattr(tokenizer, "chat_template", None)
    if isinstance(chat_template, dict):
        chat_template = chat_template.get("default") or next(iter(chat_template.values()))
    return processor_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                         chat_template=chat_template, **_processor_kwargs(processor_cls, processor_dict))


class HFVideoLM(Backbone):
    """An LVLM from ``transformers``: N frames as a video + the title in the family's chat template ->
    every decoder layer's hidden state, pooled over the positions a pooling selects."""

    inputs = ("frames", "title", "cover")
    default_inputs = ("frames", "title")
    poolings = ("video_mean", "text_mean", "all_mean", "last")
    default_pooling = "video_mean"
    can_caption = True
    needs_source = True
    frame_size = 224
    num_layers = 0
    dim = 0
    default_checkpoint: str | None = None
    encode_prompt = "Title: {title}"
    caption_prompt = "Describe this video in one short sentence."
    caption_title_prompt = "The video is titled \"{title}\". Describe it in one short sentence."
    max_title_chars = 300
    # set by each family
    model_cls_name = ""           # transformers class of the full model
    processor_cls_name = ""
    image_processor_cls_name = ""
    video_processor_cls: type = TorchVideoProcessor
    vision_token_attrs: tuple[str, ...] = ("video_token_id", "image_token_id")   # processor attributes
    media_token_strings: tuple[str, ...] = ()  # wrapper tokens (not text, not vision), e.g. <|vision_start|>
    same_frames_per_forward = False   # model needs equal frame counts in one forward (stacked pixel tensor)

    def __init__(self, source: str | None = None, device: str = "cpu", dtype=None):
        import torch
        import transformers

        if not source:
            example = self.default_checkpoint or "a downloaded checkpoint folder"
            raise ValueError(f"backbone family {self.family!r} needs a checkpoint: {self.family}:HF_ID_OR_LOCAL_DIR "
                             f"(e.g. {self.family}:{example}; offline: python -m dff_core tiny-checkpoint "
                             f"{self.family} DIR)")
        self.device, self.dtype = resolve_device_dtype(device, dtype)
        self.source = str(source)
        self.spec = f"{self.family}:{source}"
        self.processor = build_processor(self.source, getattr(transformers, self.processor_cls_name),
                                         getattr(transformers, self.image_processor_cls_name),
                                         self.video_processor_cls)
        model = self.load_model(self.source)
        self.model = model.to(self.device, self.dtype).eval()
        text_cfg = self.model.config.get_text_config()
        self.num_layers = int(text_cfg.num_hidden_layers) + 1
        self.dim = int(text_cfg.hidden_size)
        self.layer_names = ["embeddings"] + [f"layer {i}" for i in range(1, self.num_layers)]
        tok = self.processor.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        ids = [getattr(self.processor, a, None) for a in self.vision_token_attrs]
        self.vision_token_ids = torch.tensor(sorted({int(i) for i in ids if i is not None}), dtype=torch.long)
        media = [tok.convert_tokens_to_ids(t) for t in self.media_token_strings]
        self.media_token_ids = torch.tensor(sorted({int(i) for i in media if i is not None and i != tok.unk_token_id}),
                                            dtype=torch.long)

    quantizable = True

    def quantize_target(self):
        """The language model (int8 leaves the vision tower, a small share of the compute, in float32)."""
        inner = self.model.model
        for attr in ("language_model", "text_model"):
            if hasattr(inner, attr):
                return getattr(inner, attr)
        return inner

    def load_model(self, source: str):
        import transformers

        return getattr(transformers, self.model_cls_name).from_pretrained(source, dtype=self.dtype)

    # ------------------------------------------------------------------------------------------- inputs
    def _text(self, item: ItemInput, caption: bool) -> str | None:
        title = (item.title or "").strip()[: self.max_title_chars] or None
        if caption:
            return self.caption_title_prompt.format(title=title) if title else self.caption_prompt
        return self.encode_prompt.format(title=title) if title else None

    def _frames(self, item: ItemInput) -> np.ndarray | None:
        f = item.frames
        if f is None:
            return None
        f = np.asarray(f)
        if f.ndim == 3:
            f = f[None]
        if f.ndim != 4 or f.shape[-1] != 3 or len(f) == 0:
            raise BackboneInputError(f"item {item.item_id}: frames must be uint8 [n, h, w, 3]; got {f.shape}",
                                     item_id=item.item_id)
        return f

    def prepare(self, batch: Sequence[ItemInput], caption: bool = False, padding_side: str = "right"):
        """Processor outputs for one forward: chat-templated prompts with the frames as a video each."""
        messages, videos, metas = [], [], []
        for it in batch:
            frames, text = self._frames(it), self._text(it, caption)
            if frames is None and text is None:
                raise BackboneInputError(f"item {it.item_id}: neither frames nor a title", item_id=it.item_id)
            content: list[dict] = []
            if frames is not None:
                content.append({"type": "video"})
                videos.append(frames)
                metas.append(video_metadata(it, len(frames)))
            if text is not None:
                content.append({"type": "text", "text": text})
            messages.append(self.render([{"role": "user", "content": content}], add_generation_prompt=caption))
        tok = self.processor.tokenizer
        old_side = tok.padding_side
        tok.padding_side = padding_side
        try:
            kwargs: dict = {"text": messages, "padding": True, "return_tensors": "pt"}
            if videos:
                kwargs.update(videos=videos, video_metadata=metas)
            enc = self.processor(**kwargs)
        finally:
            tok.padding_side = old_side
        enc.pop("token_type_ids", None)
        return enc

    def render(self, conversation: list[dict], add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(conversation, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def vision_mask(self, input_ids):
        import torch

        return torch.isin(input_ids, self.vision_token_ids.to(input_ids.device))

    def text_mask(self, input_ids):
        import torch

        return ~self.vision_mask(input_ids) & ~torch.isin(input_ids, self.media_token_ids.to(input_ids.device))

    def _groups(self, batch: Sequence[ItemInput]) -> list[list[int]]:
        """Batch positions that can share one forward (equal frame counts where the model stacks frames)."""
        if not self.same_frames_per_forward:
            return [list(range(len(batch)))]
        groups: dict[int, list[int]] = {}
        for i, it in enumerate(batch):
            f = self._frames(it)
            groups.setdefault(0 if f is None else len(f), []).append(i)
        return list(groups.values())

    # ------------------------------------------------------------------------------------------- encode
    def forward_hidden(self, enc) -> tuple:
        """All hidden states of the language model (embeddings + each decoder layer), no LM head."""
        import torch

        inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in enc.items()}
        for k in ("pixel_values", "pixel_values_videos"):
            if k in inputs:
                inputs[k] = inputs[k].to(self.dtype)
        with torch.inference_mode():
            out = self.model.model(**inputs, output_hidden_states=True, use_cache=False, return_dict=True)
        return out.hidden_states

    def encode(self, batch: Sequence[ItemInput], pooling: str = "video_mean") -> np.ndarray:
        self.check_pooling(pooling)
        if not batch:
            return np.zeros((0, self.num_layers, self.dim), np.float32)
        out = np.zeros((len(batch), self.num_layers, self.dim), np.float32)
        for group in self._groups(batch):
            items = [batch[i] for i in group]
            if pooling == "video_mean":
                for it in items:
                    if it.frames is None:
                        raise BackboneInputError(f"item {it.item_id}: no frames to pool (video_mean)",
                                                 item_id=it.item_id)
            enc = self.prepare(items)
            hidden = self.forward_hidden(enc)
            ids = enc["input_ids"]
            w = pooling_weights(pooling, enc["attention_mask"], vision_mask=self.vision_mask(ids),
                                text_mask=self.text_mask(ids), item_ids=[it.item_id for it in items])
            feats = pool_layers(hidden, w)
            if feats.shape[1] != self.num_layers:
                raise RuntimeError(f"{self.spec}: model returned {feats.shape[1]} hidden states, "
                                   f"expected {self.num_layers}")
            out[group] = feats
        return out

    # ------------------------------------------------------------------------------------------ caption
    def caption(self, batch: Sequence[ItemInput], max_new_tokens: int = 32) -> list[str]:
        """A short caption per item by greedy decoding (left-padded so every prompt ends at the same
        position). Deterministic."""
        import torch

        texts: list[str] = [""] * len(batch)
        tok = self.processor.tokenizer
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        for group in self._groups(batch):
            items = [batch[i] for i in group]
            enc = self.prepare(items, caption=True, padding_side="left")
            inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in enc.items()}
            for k in ("pixel_values", "pixel_values_videos"):
                if k in inputs:
                    inputs[k] = inputs[k].to(self.dtype)
            with torch.inference_mode():
                gen = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                          pad_token_id=tok.pad_token_id, eos_token_id=eos or tok.eos_token_id)
            new = gen[:, inputs["input_ids"].shape[1]:]
            for i, t in zip(group, tok.batch_decode(new, skip_special_tokens=True)):
                texts[i] = " ".join(t.split())
        return texts


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int,
                 num_frames: int = 1, temporal_factor: int = 1) -> tuple[int, int]:
    """Qwen's resize rule: sides divisible by ``factor``, pixel count (times frames for Qwen3-VL's video budget)
    within ``[min_pixels, max_pixels]``, aspect ratio kept as closely as possible."""
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be below 200; got {max(height, width) / min(height, width):.0f}")
    t_bar = max(1, round(num_frames / temporal_factor) * temporal_factor) if temporal_factor > 1 else num_frames
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt(num_frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar
