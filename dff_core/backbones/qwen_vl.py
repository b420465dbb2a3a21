"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: frames as a native video (``<|video_pad|>`` tokens, M-RoPE).

Video layout (as upstream): frames are resized so both sides divide ``patch_size * merge_size`` within the
pixel budget, grouped by ``temporal_patch_size`` (2; the last frame repeats to fill a group) and flattened
into ``[grid_t * grid_h * grid_w, 3 * t * p * p]`` patches; each group of ``merge_size**2`` patches becomes one
``<|video_pad|>`` token. Qwen3-VL prints ``<t seconds>`` before each temporal group (timestamps from the
item's frame times); Qwen2.5-VL scales temporal positions by the sampled frame rate.
"""
from __future__ import annotations

from .hf_vlm import HALF, HFVideoLM, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, TorchVideoProcessor, smart_resize


class QwenVLVideoProcessor(TorchVideoProcessor):
    """Torch port of ``Qwen2VLVideoProcessor`` (no frame sampling: frames arrive sampled)."""

    hf_class = "Qwen2VLVideoProcessor"
    model_input_names = ["pixel_values_videos", "video_grid_thw"]
    size = {"shortest_edge": 128 * 28 * 28, "longest_edge": 28 * 28 * 768}
    patch_size = 14
    temporal_patch_size = 2
    merge_size = 2
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    budget_over_frames = False  # Qwen3-VL: the pixel budget covers all frames of the video

    def __init__(self, **kwargs):
        size = dict(kwargs.pop("size", None) or self.size)
        if (v := kwargs.pop("min_pixels", None)) is not None:
            size["shortest_edge"] = v
        if (v := kwargs.pop("max_pixels", None)) is not None:
            size["longest_edge"] = v
        super().__init__(size=size, **kwargs)

    def _videos(self, videos: list) -> dict:
        import torch

        p, m, tp = int(self.patch_size), int(self.merge_size), int(self.temporal_patch_size)
        patches, grids = [], []
        for v in videos:
            n, c, h, w = v.shape
            if self.budget_over_frames:
                rh, rw = smart_resize(h, w, p * m, self.size["shortest_edge"], self.size["longest_edge"],
                                      num_frames=max(n, tp), temporal_factor=tp)
            else:
                rh, rw = smart_resize(h, w, p * m, self.size["shortest_edge"], self.size["longest_edge"])
            v = self.normalize(self.resize(v, rh, rw))
            if pad := -n % tp:
                v = torch.cat([v, v[-1:].expand(pad, -1, -1, -1)], dim=0)
            gt, gh, gw = v.shape[0] // tp, rh // p, rw // p
            x = v.reshape(gt, tp, c, gh // m, m, p, gw // m, m, p)
            x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
            patches.append(x.reshape(gt * gh * gw, c * tp * p * p))
            grids.append([gt, gh, gw])
        return {"pixel_values_videos": torch.cat(patches, dim=0), "video_grid_thw": torch.tensor(grids)}


class Qwen3VLVideoProcessor(QwenVLVideoProcessor):
    """Torch port of ``Qwen3VLVideoProcessor``: 16-px patches, [-1, 1] normalisation, budget over frames."""

    hf_class = "Qwen3VLVideoProcessor"
    size = {"shortest_edge": 128 * 32 * 32, "longest_edge": 32 * 32 * 768}
    patch_size = 16
    image_mean = HALF
    image_std = HALF
    budget_over_frames = True
    return_metadata = True


class _QwenBase(HFVideoLM):
    video_processor_cls = QwenVLVideoProcessor
    media_token_strings = ("<|vision_start|>", "<|vision_end|>")
    frame_size = 224  # 8 frames at 224 px -> 4 temporal groups x 64 tokens


class Qwen2VLBackbone(_QwenBase):
    """Qwen2-VL (e.g. Qwen/Qwen2-VL-2B-Instruct): frames as a video + title; all LM layers."""

    family = "qwen2-vl"
    description = "Qwen2-VL: N frames as a video + the title in its chat template -> every LM layer"
    default_checkpoint = "Qwen/Qwen2-VL-2B-Instruct"
    model_cls_name = "Qwen2VLForConditionalGeneration"
    processor_cls_name = "Qwen2VLProcessor"
    image_processor_cls_name = "Qwen2VLImageProcessorPil"


class Qwen25VLBackbone(_QwenBase):
    """Qwen2.5-VL (e.g. Qwen/Qwen2.5-VL-3B-Instruct)."""

    family = "qwen2.5-vl"
    description = "Qwen2.5-VL: N frames as a video + the title in its chat template -> every LM layer"
    default_checkpoint = "Qwen/Qwen2.5-VL-3B-Instruct"
    model_cls_name = "Qwen2_5_VLForConditionalGeneration"
    processor_cls_name = "Qwen2_5_VLProcessor"
    image_processor_cls_name = "Qwen2VLImageProcessorPil"

    class video_processor_cls(QwenVLVideoProcessor):  # noqa: N801 - needs the sampled fps (metadata)
        return_metadata = True


class Qwen3VLBackbone(_QwenBase):
    """Qwen3-VL (e.g. Qwen/Qwen3-VL-2B-Instruct): frames with timestamps; DeepStack vision features."""

    family = "qwen3-vl"
    description = "Qwen3-VL: N timestamped frames as a video + the title in its chat template -> every LM layer"
    default_checkpoint = "Qwen/Qwen3-VL-2B-Instruct"
    model_cls_name = "Qwen3VLForConditionalGeneration"
    processor_cls_name = "Qwen3VLProcessor"
    image_processor_cls_name = "Qwen2VLImageProcessorPil"
    video_processor_cls = Qwen3VLVideoProcessor

    def render(self, conversation: list[dict], add_generation_prompt: bool) -> str:
        """The template wraps the video in ``<|vision_start|>..<|vision_end|>`` and the processor wraps each
        timestamped group again; keep only the per-group wrappers, the layout Qwen3-VL was trained on."""
        text = super().render(conversation, add_generation_prompt)
        p = self.processor
        return text.replace(f"{p.vision_start_token}{p.video_token}{p.vision_end_token}", p.video_token)
