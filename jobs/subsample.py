"""A seeded user subsample of a stored dataset, with its feature sets copied: a study that fits small machines.

On 2 CPU cores a full MicroLens-50k SASRec step costs most of a second, and every step computes the whole item
table (DFF mixes every layer of every item), so both fewer users (fewer steps) and the smaller catalogue that
those users touch (cheaper steps) matter. The sample keeps each chosen user's whole, already-preprocessed
sequence in order, so the leave-one-out targets are the same as in the full dataset.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from dff_core.data.importers import Preprocessing, RawDataset, prepare
from storage import Database
from storage.datasets import get_dataset, load_interactions, load_items, store_dataset
from storage.db import NotFound
from storage.features import create_feature_set, finish_feature_set, get_feature_set, read_features, write_vectors


def subsample_dataset(db: Database, source: str, name: str, users: int, seed: int = 0,
                      feature_sets: list[str] | None = None, log=print) -> dict:
    """Store ``name``: ``users`` users of ``source`` drawn with ``seed``, and copies of ``feature_sets``
    restricted to the items that remain. Returns a summary (users, items, interactions, feature sets)."""
    ds = get_dataset(db, source)
    try:
        get_dataset(db, name)
        raise ValueError(f"dataset {name!r} already exists; pick another name or delete it first")
    except NotFound:
        pass
    fsets = [get_feature_set(db, f, dataset=ds.id) for f in feature_sets or []]
    inter = load_interactions(db, ds.id)
    all_users = np.unique(inter["user_idx"].to_numpy())
    if users <= 0:
        raise ValueError("the number of users to keep must be positive")
    if users >= len(all_users):
        raise ValueError(f"{source!r} has only {len(all_users)} users; ask for fewer than that")
    chosen = np.sort(np.random.default_rng(seed).choice(all_users, size=users, replace=False))
    inter = inter[inter["user_idx"].isin(chosen)].sort_values(["user_idx", "pos"])
    items = load_items(db, ds.id)
    kept_idx = np.unique(inter["item_idx"].to_numpy())
    items = items.set_index("idx").loc[kept_idx].reset_index()
    ext = dict(zip(items["idx"].to_numpy(), np.asarray(items["item_id"].tolist(), dtype=str)))
    raw_items = pd.DataFrame({"item_id": np.asarray(items["item_id"].tolist(), dtype=str),
                              "title": items["title"].tolist(), "video_path": items["video_path"].tolist(),
                              "cover_path": items["cover_path"].tolist(),
                              "meta": [json.loads(m) if isinstance(m, str) and m else {} for m in items["meta"]]})
    raw_inter = pd.DataFrame({"user_id": [f"u{int(u)}" for u in inter["user_idx"]],
                              "item_id": [ext[int(i)] for i in inter["item_idx"]],
                              "ts": pd.array(inter["pos"].to_numpy(), dtype="Int64"),
                              "order": np.arange(len(inter))})
    raw = RawDataset(items=raw_items, interactions=raw_inter, root=None, source=f"sample of {ds.name}")
    prepared = prepare(raw, Preprocessing(min_interactions=3))  # kept users passed the source filter
    params = {**prepared.params, "subsample": {"source": ds.name, "users": int(users), "seed": int(seed)}}
    new = store_dataset(db, name, raw.source, ds.root, params, prepared.stats, prepared.warnings,
                        prepared.items, prepared.users, prepared.interactions)
    new_items = load_items(db, new.id)
    new_idx = dict(zip(np.asarray(new_items["item_id"].tolist(), dtype=str), new_items["idx"].to_numpy()))
    src_rows = np.array([k for k in kept_idx])
    dst_rows = np.array([new_idx[ext[int(i)]] for i in kept_idx])
    copied = []
    for fs in fsets:
        out = create_feature_set(db, new.id, fs.name, fs.backbone, fs.num_layers, fs.dim, kind=fs.kind,
                                 inputs=fs.inputs, pooling=fs.pooling,
                                 params={**fs.params, "copied_from": {"dataset": ds.name, "feature_set": fs.id}},
                                 dtype=fs.dtype, layer_names=fs.layer_names)
        dtype = np.float16 if fs.dtype == "float16" else np.float32  # as stored: no widening copy
        block = np.zeros((len(dst_rows), fs.num_layers, fs.dim), dtype=dtype)
        keep = np.ones(len(dst_rows), dtype=bool)
        for layer in range(fs.num_layers):  # one layer at a time: the full catalogue never sits in memory
            feats, present = read_features(db, fs, layers=[layer], dtype=dtype)
            keep &= present[src_rows]
            block[:, layer] = feats[src_rows, 0]
            del feats
        write_vectors(db, out, dst_rows[keep], block[keep])
        finish_feature_set(db, out, "complete" if keep.all() else "partial",
                           {"items": int(keep.sum()), "missing_items": int((~keep).sum())})
        copied.append(fs.name)
        log(f"copied feature set {fs.name!r}: {int(keep.sum())} items x {fs.num_layers} layers")
    s = new.stats
    return {"dataset": name, "users": s["users"], "items": s["items"], "interactions": s["interactions"],
            "feature_sets": copied}
