"""SmolVLM / SmolVLM2 (e.g. HuggingFaceTB/SmolVLM2-256M-Video-Instruct) and Idefics3-type SmolVLM checkpoints.

Frames are resized to the vision tower's square input and each becomes ``image_seq_len`` ``<image>`` tokens
(patches pixel-shuffled by ``scale_factor``), wrapped as upstream: an intro line ("You are provided the
following series of N frames ..."), then per frame ``Frame from MM:SS:<fake_token_around_image><global-img>
<image>...<fake_token_around_image>``. ``video_mean`` averages the ``<image>`` positions only; the wrapper
tokens count neither as video nor as text. Idefics3 checkpoints (the first SmolVLM release) have no video
support upstream; they get the same frame-by-frame prompt.
"""
from __future__ import annotations

from .hf_vlm import HALF, HFVideoLM, TorchVideoProcessor


class SmolVLMVideoProcessor(TorchVideoProcessor):
    """Torch port of ``SmolVLMVideoProcessor``: square frames of ``max_image_size``, [-1, 1] normalisation,
    zero-padded to the longest video of the call with a pixel mask."""

    hf_class = "SmolVLMVideoProcessor"
    model_input_names = ["pixel_values", "pixel_attention_mask"]
    size = {"longest_edge": 4 * 364}
    max_image_size = {"longest_edge": 364}
    image_mean = HALF
    image_std = HALF
    num_frames = 64
    fps = 1
    return_metadata = True

    def __init__(self, **kwargs):
        sampling = kwargs.get("video_sampling")
        if isinstance(sampling, dict):  # older configs keep the frame options here
            kwargs.setdefault("num_frames", sampling.get("max_frames", self.num_frames))
            kwargs.setdefault("fps", sampling.get("fps", self.fps))
        super().__init__(**kwargs)

    def _videos(self, videos: list) -> dict:
        import torch

        side = int(self.max_image_size["longest_edge"])
        out = [self.normalize(self.resize(v, side, side)) for v in videos]
        n = max(len(v) for v in out)
        pixels = torch.zeros(len(out), n, 3, side, side)
        mask = torch.zeros(len(out), n, side, side, dtype=torch.long)
        for i, v in enumerate(out):
            pixels[i, : len(v)] = v
            mask[i, : len(v)] = 1
        return {"pixel_values": pixels, "pixel_attention_mask": mask}


class SmolVLMBackbone(HFVideoLM):
    """SmolVLM: timestamped frames + the title in its chat template; all LM layers."""

    family = "smolvlm"
    description = "SmolVLM/SmolVLM2: N timestamped frames + the title in its chat template -> every LM layer"
    default_checkpoint = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"
    model_cls_name = "SmolVLMForConditionalGeneration"
    processor_cls_name = "SmolVLMProcessor"
    image_processor_cls_name = "SmolVLMImageProcessorPil"
    video_processor_cls = SmolVLMVideoProcessor
    vision_token_attrs = ("image_token_id",)
    media_token_strings = ("<fake_token_around_image>", "<global-img>")
    same_frames_per_forward = True  # zero-padded frames would shift nothing but cost a vision pass each
    frame_size = 384

    def load_model(self, source: str):
        import transformers

        config = transformers.AutoConfig.from_pretrained(source)
        name = "Idefics3ForConditionalGeneration" if config.model_type == "idefics3" else self.model_cls_name
        return getattr(transformers, name).from_pretrained(source, dtype=self.dtype)
