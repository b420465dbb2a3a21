"""LLaVA-OneVision (e.g. llava-hf/llava-onevision-qwen2-0.5b-ov-hf): frames as a ``<video>``.

Each frame is resized to the vision tower's square input (384 px for the released checkpoints), encoded by
SigLIP, projected and 2x2 bilinearly pooled; the ``<video>`` placeholder expands to
``frames * ceil(side/2)**2 + 1`` tokens (the last is the learned newline embedding, kept in ``video_mean``).
The model stacks frames into one ``[videos, frames, 3, H, W]`` tensor, so items with different frame counts
go through separate forward passes.
"""
from __future__ import annotations

from .hf_vlm import HFVideoLM, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, TorchVideoProcessor


class LlavaOneVisionVideoProcessor(TorchVideoProcessor):
    """Torch port of ``LlavaOnevisionVideoProcessor``: square resize, CLIP normalisation."""

    hf_class = "LlavaOnevisionVideoProcessor"
    size = {"height": 384, "width": 384}
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD

    def _videos(self, videos: list) -> dict:
        import torch

        h, w = int(self.size["height"]), int(self.size["width"])
        out = [self.normalize(self.resize(v, h, w)) for v in videos]
        if len({len(v) for v in out}) > 1:
            raise ValueError("LLaVA-OneVision needs the same number of frames for every video of one call")
        return {"pixel_values_videos": torch.stack(out)}


class LlavaOneVisionBackbone(HFVideoLM):
    """LLaVA-OneVision: frames as a video + the title in its chat template; all Qwen2 LM layers."""

    family = "llava-onevision"
    description = "LLaVA-OneVision: N frames as a video + the title in its chat template -> every LM layer"
    default_checkpoint = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
    model_cls_name = "LlavaOnevisionForConditionalGeneration"
    processor_cls_name = "LlavaOnevisionProcessor"
    image_processor_cls_name = "LlavaOnevisionImageProcessorPil"
    video_processor_cls = LlavaOneVisionVideoProcessor
    same_frames_per_forward = True
    frame_size = 384
