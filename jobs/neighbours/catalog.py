"""A dataset's catalogue as the Explore page shows it (``dff_core.neighbours.explore.Catalog``): items with
their media (resolved inside the dataset's folder) and popularity, and the training split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dff_core.data.media import resolve_media
from dff_core.neighbours.explore import Catalog
from jobs.reads import load_split
from storage import Database
from storage.datasets import get_dataset, load_items


def load_catalog(db: Database, dataset: str | int) -> Catalog:
    ds = get_dataset(db, dataset)
    items = load_items(db, ds.id)
    split = load_split(db, ds.id)
    root = Path(ds.root) if ds.root else None

    def media(value) -> str | None:
        return resolve_media(root, value)  # None outside the dataset's media folder: never served

    pop = np.bincount(np.concatenate([*split.train, split.val_target, split.test_target]).astype(np.int64),
                      minlength=split.num_items) if split.train else np.zeros(len(items), dtype=np.int64)
    frame = pd.DataFrame({
        "idx": items["idx"].to_numpy(), "item_id": np.asarray(items["item_id"].tolist(), dtype=str),
        "title": [t if isinstance(t, str) else "" for t in items["title"].tolist()],
        "cover": [media(v) for v in items["cover_path"].tolist()],
        "video": [media(v) for v in items["video_path"].tolist()],
        "popularity": pop[: len(items)],
    })
    return Catalog(dataset=ds.name, items=frame, split=split)
