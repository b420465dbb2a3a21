"""A dataset's catalogue as the Explore page shows it (``dff_core.neighbours.explore.Catalog``): items with
their media paths (resolved inside the dataset's folder when shown) and popularity, and the training split."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dff_core.neighbours.explore import Catalog
from jobs.reads import load_split
from storage import Database
from storage.datasets import get_dataset, load_items


def load_catalog(db: Database, dataset: str | int) -> Catalog:
    ds = get_dataset(db, dataset)
    items = load_items(db, ds.id)
    split = load_split(db, ds.id)
    pop = np.bincount(np.concatenate([*split.train, split.val_target, split.test_target]).astype(np.int64),
                      minlength=split.num_items) if split.train else np.zeros(len(items), dtype=np.int64)
    frame = pd.DataFrame({
        "idx": items["idx"].to_numpy(), "item_id": np.asarray(items["item_id"].tolist(), dtype=str),
        "title": [t if isinstance(t, str) else "" for t in items["title"].tolist()],
        "cover_path": items["cover_path"].to_numpy(), "video_path": items["video_path"].to_numpy(),
        "popularity": pop[: len(items)],
    })
    # media resolve inside the dataset's folder when shown (Catalog.media): None outside it, never served
    return Catalog(dataset=ds.name, items=frame, split=split, media_root=ds.root or None)
