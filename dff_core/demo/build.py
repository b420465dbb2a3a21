"""``build_demo``: the catalogue, clips, sequences and README of the demo dataset written into one folder."""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dff_core.demo.rendering import render_item, video_codec
from dff_core.demo.simulation import MAX_LEN, MIN_LEN, simulate_interactions
from dff_core.demo.topics import (FPS, MAX_FRAMES, MIN_FRAMES, SIZE, TOPIC_NAMES, TOPICS, ZIPF_EXPONENT, Catalog,
                                  make_catalog)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoFiles:
    """What ``build_demo`` wrote (paths are absolute) and how much of it."""

    root: Path
    items_csv: Path
    interactions_csv: Path
    readme: Path
    videos_dir: Path
    covers_dir: Path
    n_items: int
    n_users: int
    n_interactions: int
    n_videos: int
    n_covers: int
    topics: tuple[str, ...]
    codec: str                       # "libx264" or "mpeg4"
    cover_only: tuple[str, ...]      # item ids with a cover but no video
    no_media: tuple[str, ...]        # item ids with neither video nor cover
    seconds: float                   # build time


def build_demo(out_dir: Path, *, seed: int = 0, n_items: int = 300, n_users: int = 2000,
               progress: Progress | None = None) -> DemoFiles:
    """Write the seeded demo dataset into ``out_dir`` (created if needed; the demo's own files are
    overwritten, nothing is deleted — build into a fresh folder to avoid stale clips of an earlier build).
    Needs ``n_items >= 20`` and ``n_users >= 1``; raises ``ValueError`` otherwise, before writing anything.

    ``progress(stage, done, total)`` is called for stages ``"catalog"``, ``"clips"`` (once per item)
    and ``"interactions"`` (in steps of users), each from ``(stage, 0, total)`` to ``(stage, total, total)``.
    """
    start = time.perf_counter()
    if n_users < 1:
        raise ValueError("n_users must be at least 1")
    report = progress or (lambda stage, done, total: None)
    report("catalog", 0, 1)
    catalog = make_catalog(n_items, seed=seed)   # validates n_items before anything is written
    report("catalog", 1, 1)

    out = Path(out_dir)
    videos, covers = out / "videos", out / "covers"
    videos.mkdir(parents=True, exist_ok=True)
    covers.mkdir(parents=True, exist_ok=True)

    codec = video_codec()
    total = len(catalog.item_ids)
    report("clips", 0, total)
    for i, item_id in enumerate(catalog.item_ids):
        if catalog.has_video[i] or catalog.has_cover[i]:
            render_item(catalog, i, seed=seed,
                        video=videos / f"{item_id}.mp4" if catalog.has_video[i] else None,
                        cover=covers / f"{item_id}.jpg" if catalog.has_cover[i] else None, codec=codec)
        report("clips", i + 1, total)

    interactions = simulate_interactions(catalog, n_users, seed=seed,
                                         progress=lambda d, t: report("interactions", d, t))

    items_csv = out / "items.csv"
    with open(items_csv, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["item_id", "title", "video_path", "cover_path", "topic"])
        for i, item_id in enumerate(catalog.item_ids):
            w.writerow([item_id, catalog.titles[i],
                        f"videos/{item_id}.mp4" if catalog.has_video[i] else "",
                        f"covers/{item_id}.jpg" if catalog.has_cover[i] else "",
                        TOPICS[catalog.topic[i]].name])
    inter_csv = out / "interactions.csv"
    with open(inter_csv, "w", newline="", encoding="utf-8") as fh:
        fh.write("user_id,item_id,timestamp\n")
        fh.writelines(f"{u},{catalog.item_ids[i]},{ts}\n" for u, i, ts in interactions)

    cover_only = tuple(catalog.item_ids[i] for i in np.flatnonzero(~catalog.has_video & catalog.has_cover))
    no_media = tuple(catalog.item_ids[i] for i in np.flatnonzero(~catalog.has_video & ~catalog.has_cover))
    readme = out / "README.txt"
    readme.write_text(_readme(seed, catalog, n_users, len(interactions), codec, cover_only, no_media),
                      encoding="utf-8")
    return DemoFiles(root=out.resolve(), items_csv=items_csv.resolve(), interactions_csv=inter_csv.resolve(),
                     readme=readme.resolve(), videos_dir=videos.resolve(), covers_dir=covers.resolve(),
                     n_items=total, n_users=n_users, n_interactions=len(interactions),
                     n_videos=int(catalog.has_video.sum()), n_covers=int(catalog.has_cover.sum()),
                     topics=TOPIC_NAMES, codec=codec, cover_only=cover_only, no_media=no_media,
                     seconds=time.perf_counter() - start)


def _readme(seed: int, catalog: Catalog, n_users: int, n_interactions: int, codec: str,
            cover_only: tuple[str, ...], no_media: tuple[str, ...]) -> str:
    counts = np.bincount(catalog.topic, minlength=len(TOPICS))
    topics = "\n".join(f"  {t.name:<9} {counts[k]:>4} items  texture={t.texture}, shapes={t.shape}, "
                       f"motion={t.motion}" for k, t in enumerate(TOPICS))
    return f"""DFF Studio demo dataset (synthetic)
===================================

Generated by dff_core.demo.build_demo(seed={seed}, n_items={len(catalog.item_ids)}, n_users={n_users}).
Nothing here is real: the clips are moving coloured shapes on textured backgrounds, the titles are
built from word lists and the users are simulated. The same seed always gives the same files.

Files
  items.csv          item_id,title,video_path,cover_path,topic (paths relative to this folder)
  interactions.csv   user_id,item_id,timestamp (Unix seconds; time-ordered per user; no repeats)
  videos/ID.mp4      {MIN_FRAMES // FPS}-{MAX_FRAMES // FPS} s, {SIZE}x{SIZE}, {FPS} fps, codec {codec}
  covers/ID.jpg      the middle frame of each clip

{len(catalog.item_ids)} items, {n_users} users, {n_interactions} interactions.

Topics (latent; the `topic` column is for analysis only - a model should not be given it)
{topics}
Each topic has its own palette, background texture, shape family, motion pattern and title vocabulary;
items vary within a topic (three visual variants plus per-item jitter). About 7% of titles are generic.

Users have 1-3 preferred topics and {MIN_LEN}-{MAX_LEN} interactions. The next item usually stays in the
current topic (often the same visual variant), else returns to a preferred topic, rarely explores.
Popularity within a topic is Zipf-like (exponent {ZIPF_EXPONENT}): a few hits, a long tail of rare items.

Media fallbacks (on purpose)
  cover only, no video: {', '.join(cover_only) or '-'}
  neither video nor cover: {', '.join(no_media) or '-'}
"""


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dff_core.demo", description="build the seeded demo dataset")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--users", type=int, default=2000)
    args = parser.parse_args(argv)
    files = build_demo(args.out_dir, seed=args.seed, n_items=args.items, n_users=args.users)
    print(f"{files.root}: {files.n_items} items ({files.n_videos} videos, {files.n_covers} covers, codec "
          f"{files.codec}), {files.n_users} users, {files.n_interactions} interactions in {files.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
