"""What the Explore page shows besides the indices: the catalogue with media and popularity, who
watched what together, and how much different representations agree about neighbours."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.media import resolve_media
from ..data.split import SplitData


def placeholder(size: int = 96) -> np.ndarray:
    """A neutral grey tile for items without a cover (so thumbnail grids stay aligned)."""
    tile = np.full((size, size, 3), 225, dtype=np.uint8)
    tile[size // 2 - 1: size // 2 + 1, size // 4: 3 * size // 4] = 170
    return tile


def thumbnail(path: str, width: int) -> tuple[bytes | None, str | None]:
    """``(JPEG bytes at most width pixels wide, None)`` for the image at ``path``, or ``(None, why not)`` in a few
    words when it does not decode (a corrupt or truncated JPEG, a text file named .jpg).

    One full decode both proves the file is an image and makes the small copy a page shows, so the browser
    fetches and decodes a thumbnail instead of the whole cover (JPEGs are decoded at a reduced scale, ``draft``)."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.draft("RGB", (width, max(1, width * image.height // max(1, image.width))))
            image.load()
            small = image.convert("RGB")
    except UnidentifiedImageError:
        return None, "not an image file PIL can read (corrupt or wrong format)"
    except (OSError, ValueError, SyntaxError) as exc:  # truncated data, bad headers
        return None, f"the image cannot be decoded ({exc})"
    if small.width > width:
        small = small.resize((width, max(1, round(small.height * width / small.width))), Image.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=88)
    return out.getvalue(), None


@dataclass
class Catalog:
    """Items of one dataset (row = item index) with their stored media paths and interaction counts, and
    its leave-one-out split (histories for co-occurrence and user pages).

    Media paths are resolved (confined to ``media_root``, see ``dff_core.data.media``) when an item is shown,
    not when the catalogue loads: a page shows a few dozen covers, and resolving every path of a
    20,000-item catalogue up front took seconds."""

    dataset: str
    items: pd.DataFrame = field(repr=False)   # idx, item_id, title, cover_path, video_path, popularity
    split: SplitData = field(repr=False)
    media_root: str | None = None
    _by_id: dict | None = field(default=None, repr=False)
    _pairs: tuple | None = field(default=None, repr=False)
    _media: dict = field(default_factory=dict, repr=False)

    def index_of(self, item_id: str) -> int:
        """Dataset item index of an external item id, with a helpful error for unknown ids."""
        if self._by_id is None:
            self._by_id = {str(v): i for i, v in enumerate(self.items["item_id"].tolist())}
        try:
            return self._by_id[str(item_id)]
        except KeyError:
            examples = ", ".join(self.items["item_id"].astype(str).head(3))
            raise ValueError(f"no item {item_id!r} in dataset {self.dataset!r} (item ids look like: {examples})") \
                from None

    def media(self, item: int, kind: str = "cover") -> str | None:
        """Absolute path of an item's ``cover`` or ``video`` inside the media folder, or None when it has none,
        the file is missing or the stored path leads outside the folder (never served)."""
        key = (int(item), kind)
        if key not in self._media:
            self._media[key] = resolve_media(self.media_root, self.items.at[int(item), f"{kind}_path"])
        return self._media[key]

    def search(self, text: str, limit: int = 100) -> pd.DataFrame:
        """Items whose id or title contains ``text`` (case-insensitive), exact id first, then by popularity."""
        text = (text or "").strip().lower()
        items = self.items
        if text:
            ids = items["item_id"].astype(str).str.lower()
            hit = ids.str.contains(text, regex=False) | items["title"].fillna("").str.lower().str.contains(
                text, regex=False)
            items = items[hit].assign(_exact=(ids[hit] == text))
            items = items.sort_values(["_exact", "popularity"], ascending=False).drop(columns="_exact")
        else:
            items = items.sort_values("popularity", ascending=False)
        return items.head(limit)

    def search_users(self, text: str, limit: int = 200) -> list[str]:
        """User ids containing ``text`` (exact match first), longest histories first otherwise."""
        text = (text or "").strip().lower()
        users = [str(u) for u in self.split.user_ids]
        lengths = {u: len(s) for u, s in zip(users, self.split.train)}
        hits = [u for u in users if text in u.lower()] if text else users
        hits.sort(key=lambda u: (u.lower() != text, -lengths[u]))
        return hits[:limit]

    def user_history(self, user: str, last: int | None = None) -> list[int]:
        """The user's test input (training items + validation item), oldest first."""
        users = {str(u): i for i, u in enumerate(self.split.user_ids)}
        if str(user) not in users:
            raise ValueError(f"no user {user!r} in dataset {self.dataset!r}")
        seq = self.split.test_input(users[str(user)]).tolist()
        return seq[-last:] if last else seq

    def cooccurrence(self, item: int) -> dict[int, int]:
        """``{other item: number of users whose training history holds both}`` for users who trained on
        ``item`` (validation and test items are held out, so they never count).

        Array work over the (user, item) pairs of all training histories, each pair once, so a catalogue of
        50,000 users answers in milliseconds."""
        if self._pairs is None:
            lengths = np.array([len(s) for s in self.split.train], dtype=np.int64)
            users = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
            items = np.concatenate(self.split.train).astype(np.int64) if len(users) else users
            width = int(items.max()) + 1 if len(items) else 1
            pairs = np.unique(users * width + items)
            self._pairs = (pairs // width, pairs % width)
        users, items = self._pairs
        holders = np.zeros(len(self.split.train), dtype=bool)
        holders[users[items == int(item)]] = True
        counts = np.bincount(items[holders[users]], minlength=int(item) + 1)
        counts[int(item)] = 0
        others = np.flatnonzero(counts)
        return dict(zip(others.tolist(), counts[others].tolist()))


def overlap_at_k(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Mean ``|top-k(a) ∩ top-k(b)| / k`` over rows of two ``[queries, >=k]`` neighbour-id arrays."""
    vals = [len(set(x[:k][x[:k] >= 0]) & set(y[:k][y[:k] >= 0])) / k for x, y in zip(a, b)]
    return float(np.mean(vals)) if vals else float("nan")


def agreement(indices: dict[str, object], k: int = 10, queries: int = 300, seed: int = 0) -> pd.DataFrame:
    """Overlap@k matrix between the neighbour lists of several indices (label -> ``NeighbourIndex``),
    over a seeded sample of items that every index can query."""
    labels = list(indices)
    if not labels:
        return pd.DataFrame()
    common = np.logical_and.reduce([indices[l].present for l in labels])
    pool = np.flatnonzero(common)
    if len(pool) == 0:
        raise ValueError("no item has a vector in every chosen representation")
    sample = np.random.default_rng(seed).choice(pool, size=min(queries, len(pool)), replace=False)
    lists = {l: indices[l].search_many(sample, k)[0] for l in labels}
    m = np.eye(len(labels))
    for i, a in enumerate(labels):
        for j in range(i + 1, len(labels)):
            m[i, j] = m[j, i] = overlap_at_k(lists[a], lists[labels[j]], k)
    return pd.DataFrame(m, index=labels, columns=labels)
