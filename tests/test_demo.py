"""The seeded demo dataset: files, schema, determinism, decodable media, long tail and learnable signal."""
from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from dff_core import demo

SMALL = dict(n_items=30, n_users=150)


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    calls = []
    out = tmp_path_factory.mktemp("demo") / "demo"
    files = demo.build_demo(out, seed=3, progress=lambda *a: calls.append(a), **SMALL)
    return files, calls


@pytest.fixture(scope="module")
def full_size():
    """The default-size catalog and interactions (no rendering: that is what the statistics are about)."""
    catalog = demo.make_catalog(300, seed=0)
    rows = demo.simulate_interactions(catalog, 2000, seed=0)
    return catalog, rows


# ------------------------------------------------------------------------------------- files, schema


def test_files_and_counts(built):
    files, _ = built
    root = files.root
    assert (root / "items.csv").is_file() and (root / "interactions.csv").is_file()
    assert files.items_csv == root / "items.csv" and files.interactions_csv == root / "interactions.csv"
    items = _read(files.items_csv)
    assert list(items[0].keys()) == ["item_id", "title", "video_path", "cover_path", "topic"]
    assert len(items) == files.n_items == 30
    assert [r["item_id"] for r in items] == [str(i) for i in range(1, 31)]
    assert {r["topic"] for r in items} == set(demo.TOPIC_NAMES)   # 30 items: every topic present
    assert files.topics == demo.TOPIC_NAMES and 8 <= len(demo.TOPICS) <= 12
    assert all(r["title"].strip() for r in items)

    with_video = [r for r in items if r["video_path"]]
    with_cover = [r for r in items if r["cover_path"]]
    assert files.n_videos == len(with_video) == len(list(files.videos_dir.glob("*.mp4")))
    assert files.n_covers == len(with_cover) == len(list(files.covers_dir.glob("*.jpg")))
    for r in with_video:
        assert r["video_path"] == f"videos/{r['item_id']}.mp4" and (root / r["video_path"]).is_file()
    for r in with_cover:
        assert r["cover_path"] == f"covers/{r['item_id']}.jpg" and (root / r["cover_path"]).is_file()

    # the deliberate media fallbacks: cover only, and nothing at all
    cover_only = tuple(r["item_id"] for r in items if not r["video_path"] and r["cover_path"])
    no_media = tuple(r["item_id"] for r in items if not r["video_path"] and not r["cover_path"])
    assert cover_only == files.cover_only and len(cover_only) == 2
    assert no_media == files.no_media and len(no_media) == 2
    assert not any(r["cover_path"] == "" and r["video_path"] for r in items)   # no video without a cover

    readme = files.readme.read_text()
    assert "synthetic" in readme and "seed=3" in readme
    assert ", ".join(cover_only) in readme and ", ".join(no_media) in readme


def test_interactions_are_valid_sequences(built):
    files, _ = built
    items = {r["item_id"] for r in _read(files.items_csv)}
    rows = _read(files.interactions_csv)
    assert list(rows[0].keys()) == ["user_id", "item_id", "timestamp"]
    assert len(rows) == files.n_interactions
    by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in rows:
        assert r["item_id"] in items
        by_user[r["user_id"]].append((int(r["timestamp"]), r["item_id"]))
    assert len(by_user) == files.n_users == 150
    for seq in by_user.values():
        assert demo.MIN_LEN <= len(seq) <= demo.MAX_LEN
        times = [t for t, _ in seq]
        assert all(a < b for a, b in zip(times, times[1:]))          # strictly increasing, in file order
        assert len({i for _, i in seq}) == len(seq)                   # no repeats within a user
        assert times[0] >= demo.BASE_TIME
    # every item, the media-fallback ones included, is watched at least once
    assert {r["item_id"] for r in rows} == items


def test_progress_callbacks(built):
    _, calls = built
    stages = [c[0] for c in calls]
    assert set(stages) == {"catalog", "clips", "interactions"}
    for stage in set(stages):
        seen = [(d, t) for s, d, t in calls if s == stage]
        done = [d for d, _ in seen]
        assert done[0] == 0 and done == sorted(done)
        assert len({t for _, t in seen}) == 1 and done[-1] == seen[0][1]
    assert [d for s, d, _ in calls if s == "clips"][-1] == 30


# --------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_files_and_another_seed_differs(built, tmp_path):
    files, _ = built
    again = demo.build_demo(tmp_path / "again", seed=3, **SMALL)
    first, second = _digest(files.root), _digest(again.root)
    assert first == second                               # CSVs, README, every clip and cover, byte for byte
    assert len([k for k in first if k.endswith(".mp4")]) == files.n_videos

    other = demo.build_demo(tmp_path / "other", seed=4, **SMALL)
    assert other.items_csv.read_bytes() != files.items_csv.read_bytes()
    assert other.interactions_csv.read_bytes() != files.interactions_csv.read_bytes()
    assert _digest(other.videos_dir) != _digest(files.videos_dir)


def test_simulation_is_deterministic():
    catalog = demo.make_catalog(40, seed=11)
    assert demo.simulate_interactions(catalog, 50, seed=11) == demo.simulate_interactions(catalog, 50, seed=11)
    assert demo.simulate_interactions(catalog, 50, seed=11) != demo.simulate_interactions(catalog, 50, seed=12)
    again = demo.make_catalog(40, seed=11)
    assert again.titles == catalog.titles and np.array_equal(again.topic, catalog.topic)


# --------------------------------------------------------------------------------------------- media


def test_clips_decode_with_expected_size_and_duration(built):
    import av

    files, _ = built
    expected_codec = "h264" if files.codec == "libx264" else "mpeg4"
    assert files.codec == demo.video_codec()
    clips = sorted(files.videos_dir.glob("*.mp4"))
    assert len(clips) == 26
    for path in clips:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == expected_codec
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            assert 2.0 <= container.duration / 1e6 <= 4.2
        assert (frames[0].shape == (demo.SIZE, demo.SIZE, 3))
        assert demo.MIN_FRAMES <= len(frames) <= demo.MAX_FRAMES            # 2-4 s at 8 fps
        assert 2.0 <= len(frames) / demo.FPS <= 4.0
        first, last = frames[0].astype(int), frames[-1].astype(int)
        assert np.abs(first - last).mean() > 1.0                            # things move
        assert frames[0].std() > 10                                         # not a flat colour


def test_covers_are_jpegs_matching_the_clip(built):
    import av
    from PIL import Image

    files, _ = built
    covers = sorted(files.covers_dir.glob("*.jpg"))
    assert len(covers) == 28
    for path in covers:
        assert path.read_bytes()[:3] == b"\xff\xd8\xff"
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.size == (demo.SIZE, demo.SIZE) and img.mode == "RGB"
            img.load()
    # the cover is the clip's middle frame (up to JPEG and h264 loss)
    item = next(p.stem for p in covers if (files.videos_dir / f"{p.stem}.mp4").exists())
    with av.open(str(files.videos_dir / f"{item}.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    cover = np.asarray(Image.open(files.covers_dir / f"{item}.jpg")).astype(int)
    diffs = [np.abs(cover - f.astype(int)).mean() for f in frames]
    assert int(np.argmin(diffs)) == len(frames) // 2 and min(diffs) < 6


def test_rejects_too_small_catalogs(tmp_path):
    with pytest.raises(ValueError):
        demo.build_demo(tmp_path / "x", n_items=5, n_users=10)
    with pytest.raises(ValueError):
        demo.build_demo(tmp_path / "y", n_items=30, n_users=0)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()   # nothing written
    with pytest.raises(ValueError):
        demo.simulate_interactions(demo.make_catalog(30), 0)


# ------------------------------------------------------------------------------ statistics and signal


def test_default_size_has_a_strong_long_tail(full_size):
    catalog, rows = full_size
    counts = np.bincount([i for _, i, _ in rows], minlength=300)
    assert 2000 * 8 <= len(rows) <= 2000 * 13                        # ~10 items per user
    assert counts.min() >= 1                                          # every item is watched
    top = np.sort(counts)[::-1]
    assert top[:30].sum() / counts.sum() > 0.45                       # top 10% of items: almost half of all views
    assert (counts <= 5).mean() > 0.15                                # many rare items
    assert top[0] > 10 * np.median(counts)                            # a few big hits
    lengths = np.bincount([int(u) for u, _, _ in rows])[1:]
    assert lengths.min() == demo.MIN_LEN and lengths.max() <= demo.MAX_LEN and 9 <= lengths.mean() <= 12


def test_consecutive_items_share_topics_far_above_chance(full_size):
    catalog, rows = full_size
    users = np.array([int(u) for u, _, _ in rows])
    topics = catalog.topic[[i for _, i, _ in rows]]
    same_user = users[1:] == users[:-1]
    agree = (topics[1:] == topics[:-1])[same_user].mean()
    share = np.bincount(topics) / len(topics)
    chance = (share ** 2).sum()
    assert chance < 0.15 and agree > 0.5 and agree > 4 * chance
    # within a topic, the next item favours the current visual variant (fine-grained content signal)
    variants = catalog.variant[[i for _, i, _ in rows]]
    in_topic = same_user & (topics[1:] == topics[:-1])
    assert (variants[1:] == variants[:-1])[in_topic].mean() > 1.15 / demo.N_VARIANTS


def test_titles_use_their_topic_vocabulary(full_size):
    catalog, _ = full_size
    hits = 0
    for title, t in zip(catalog.titles, catalog.topic):
        topic = demo.TOPICS[t]
        words = set(topic.nouns) | set(topic.adjectives) | set(topic.verbs) | set(topic.tags)
        others = {w for k, o in enumerate(demo.TOPICS) if k != t for w in o.nouns + o.tags}
        text = title.lower()
        hits += any(w in text for w in words) and not any(f" {w} " in f" {text} " for w in others - words)
    assert 0.8 < hits / len(catalog.titles) < 1.0       # mostly on-topic, with a few generic titles
    assert sum("#" in t for t in catalog.titles) / len(catalog.titles) > 0.3


def test_covers_cluster_by_topic(built):
    """Content signal: a cover's nearest other cover (by a colour histogram) usually shares its topic."""
    from PIL import Image

    files, _ = built
    topic = {r["item_id"]: r["topic"] for r in _read(files.items_csv)}
    ids, feats = [], []
    for path in sorted(files.covers_dir.glob("*.jpg")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        hist = np.concatenate([np.histogram(rgb[..., c], bins=8, range=(0, 256))[0] for c in range(3)])
        ids.append(path.stem)
        feats.append(hist / hist.sum())
    x = np.array(feats)
    dist = np.abs(x[:, None, :] - x[None, :, :]).sum(-1)
    np.fill_diagonal(dist, np.inf)
    nearest = dist.argmin(1)
    accuracy = np.mean([topic[ids[i]] == topic[ids[j]] for i, j in enumerate(nearest)])
    assert accuracy > 0.7                 # chance is about 0.07 with 28 covers over 10 topics
