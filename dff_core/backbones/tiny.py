"""Tiny random-weight checkpoints of every LVLM family, built offline in about a second each.

Why: tests, CI and users without downloads can run the real adapter code path (``from_pretrained`` of a
local directory, the family's processor, chat template, video tokens, all-layer forward) end to end. The
weights are random, so the features mean nothing; shapes, token bookkeeping and batching are real.

The tokenizer is byte-level BPE without merges (256 byte symbols + the family's special tokens), built
with ``tokenizers`` and wrapped in ``PreTrainedTokenizerFast`` with the family's chat template. Vision towers
use 4-8 px patches so 32x32 frames give a handful of tokens.
"""
from __future__ import annotations

from pathlib import Path

TINY_FAMILIES = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl", "llava-onevision", "smolvlm")

QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen3-VL's template without its tool-calling and reasoning branches (no default system prompt)
QWEN3_VL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% if message['content'] is string %}{{ '\n' + message['content'] }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
    "{% endfor %}{% endif %}{{ '<|im_end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'] is string %}{{': ' + message['content']}}{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]


def byte_level_tokenizer(specials: list[str], chat_template: str, *, eos: str, pad: str, bos: str | None = None):
    """A ``PreTrainedTokenizerFast``: the 256 byte-level symbols (no merges) + ``specials``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    bpe = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[], fuse_unk=False))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    bpe.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=eos, pad_token=pad, bos_token=bos,
                                  chat_template=chat_template)
    tok.padding_side = "right"
    return tok


def _text(tok, **extra) -> dict:
    return {"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
            "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id,
            **extra}


def _qwen(family: str):
    import transformers as T

    from .hf_vlm import with_transformers_mixin
    from .qwen_vl import Qwen3VLVideoProcessor, QwenVLVideoProcessor

    tok = byte_level_tokenizer(QWEN_SPECIALS, QWEN3_VL_TEMPLATE if family == "qwen3-vl" else QWEN2_VL_TEMPLATE,
                               eos="<|im_end|>", pad="<|endoftext|>")
    ids = {f"{k}_token_id": tok.convert_tokens_to_ids(t) for k, t in
           (("image", "<|image_pad|>"), ("video", "<|video_pad|>"), ("vision_start", "<|vision_start|>"),
            ("vision_end", "<|vision_end|>"))}
    patch = 4
    pixels = {"size": {"shortest_edge": 16 * 16, "longest_edge": 32 * 32}, "patch_size": patch,
              "temporal_patch_size": 2, "merge_size": 2}
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]}
    if family == "qwen2-vl":
        config = T.Qwen2VLConfig(text_config=_text(tok, rope_parameters=rope),
                                 vision_config={"depth": 2, "embed_dim": 16, "hidden_size": 32, "num_heads": 2,
                                                "mlp_ratio": 2, "patch_size": patch}, **ids)
        model_cls, proc_cls, video_cls = T.Qwen2VLForConditionalGeneration, T.Qwen2VLProcessor, QwenVLVideoProcessor
    elif family == "qwen2.5-vl":
        config = T.Qwen2_5_VLConfig(text_config=_text(tok, rope_parameters=rope),
                                    vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 32,
                                                   "num_heads": 2, "patch_size": patch, "out_hidden_size": 32,
                                                   "window_size": 16, "fullatt_block_indexes": [1],
                                                   "tokens_per_second": 2}, **ids)
        model_cls, proc_cls, video_cls = (T.Qwen2_5_VLForConditionalGeneration, T.Qwen2_5_VLProcessor,
                                          QwenVLVideoProcessor)
    else:
        config = T.Qwen3VLConfig(text_config=_text(tok, head_dim=8, rope_parameters={**rope, "mrope_interleaved": True}),
                                 vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
                                                "patch_size": patch, "out_hidden_size": 32,
                                                "num_position_embeddings": 64, "deepstack_visual_indexes": [0]},
                                 **ids)
        model_cls, proc_cls, video_cls = T.Qwen3VLForConditionalGeneration, T.Qwen3VLProcessor, Qwen3VLVideoProcessor
    mean = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3} if family == "qwen3-vl" else {}
    image_processor = T.Qwen2VLImageProcessorPil(**pixels, **mean)
    if family == "qwen3-vl":  # Qwen3-VL's video budget covers all frames
        pixels = {**pixels, "size": {"shortest_edge": 2 * 16 * 16, "longest_edge": 16 * 32 * 32}}
    video_processor = with_transformers_mixin(video_cls)(**pixels, **mean)
    processor = proc_cls(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                         chat_template=tok.chat_template)
    return model_cls, config, processor


def _llava_onevision():
    import transformers as T

    from .hf_vlm import with_transformers_mixin
    from .llava_onevision import LlavaOneVisionVideoProcessor

    tok = byte_level_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
                               LLAVA_ONEVISION_TEMPLATE, eos="<|im_end|>", pad="<|endoftext|>")
    side, pinpoints = 32, [[32, 32], [32, 64], [64, 32], [64, 64]]
    config = T.LlavaOnevisionConfig(
        text_config={"model_type": "qwen2", **_text(tok)},
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 16, "intermediate_size": 32,
                       "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": side, "patch_size": 8},
        image_token_index=tok.convert_tokens_to_ids("<image>"), video_token_index=tok.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full", vision_feature_layer=-1, image_grid_pinpoints=pinpoints)
    image_processor = T.LlavaOnevisionImageProcessorPil(size={"height": side, "width": side},
                                                        image_grid_pinpoints=pinpoints)
    video_processor = with_transformers_mixin(LlavaOneVisionVideoProcessor)(size={"height": side, "width": side})
    processor = T.LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tok,
                                          video_processor=video_processor, num_image_tokens=(side // 8) ** 2,
                                          vision_feature_select_strategy="full", chat_template=tok.chat_template)
    return T.LlavaOnevisionForConditionalGeneration, config, processor


def _smolvlm():
    import transformers as T

    from .hf_vlm import with_transformers_mixin
    from .smolvlm import SmolVLMVideoProcessor

    specials = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<global-img>",
                "<image>", "<video>"] + [f"<row_{r}_col_{c}>" for r in (1, 2) for c in (1, 2)]
    tok = byte_level_tokenizer(specials, SMOLVLM_TEMPLATE, eos="<end_of_utterance>", pad="<|endoftext|>",
                               bos="<|im_start|>")
    side, patch, scale = 32, 8, 2
    config = T.SmolVLMConfig(
        text_config={"model_type": "llama", **_text(tok)},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": side, "patch_size": patch},
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=scale, pad_token_id=tok.pad_token_id)
    image_processor = T.SmolVLMImageProcessorPil(size={"longest_edge": side}, max_image_size={"longest_edge": side},
                                                 do_image_splitting=False)
    video_processor = with_transformers_mixin(SmolVLMVideoProcessor)(size={"longest_edge": side}, max_image_size={"longest_edge": side})
    processor = T.SmolVLMProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                                   image_seq_len=(side // patch) ** 2 // scale ** 2, chat_template=tok.chat_template)
    return T.SmolVLMForConditionalGeneration, config, processor


def build_tiny_checkpoint(family: str, out_dir, seed: int = 0) -> Path:
    """Write a tiny random ``family`` checkpoint (config, weights, tokenizer, processor) to ``out_dir``;
    ``FAMILY:out_dir`` is then a valid backbone spec."""
    import torch

    family = family.strip().lower()
    if family in ("qwen2-vl", "qwen2.5-vl", "qwen3-vl"):
        model_cls, config, processor = _qwen(family)
    elif family == "llava-onevision":
        model_cls, config, processor = _llava_onevision()
    elif family == "smolvlm":
        model_cls, config, processor = _smolvlm()
    else:
        raise ValueError(f"no tiny checkpoint for family {family!r}; one of {', '.join(TINY_FAMILIES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    processor.tokenizer.save_pretrained(out)
    return out
