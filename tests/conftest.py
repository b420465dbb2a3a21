"""Shared fixtures: a fresh database file per test, the optional real MicroLens bundle, tiny datasets."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MICROLENS = ROOT.parent / "shared" / "data" / "microlens"


@pytest.fixture
def db(tmp_path):
    from storage import Database
    return Database(tmp_path / "test.duckdb")


@pytest.fixture
def microlens_dir() -> Path:
    if not (MICROLENS / "MicroLens-50k_pairs.tsv").exists():
        pytest.skip("the MicroLens-50k bundle is not present at ../shared/data/microlens")
    return MICROLENS


def write_generic(folder: Path, n_users: int = 12, n_items: int = 20, seq: int = 6, media: bool = False) -> tuple[Path, Path]:
    """A small, valid generic dataset: every user watches ``seq`` distinct items in time order."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id,item_id,timestamp"]
    for u in range(n_users):
        for k in range(seq):
            lines.append(f"u{u},i{(u * 3 + k * 7) % n_items},{1000 * u + k}")
    (folder / "interactions.csv").write_text("\n".join(lines) + "\n")
    rows = ["item_id,title,video_path,cover_path,category"]
    for i in range(n_items):
        video = f"videos/i{i}.mp4" if media and i % 2 == 0 else ""
        rows.append(f"i{i},\"title {i}, with comma\",{video},,cat{i % 3}")
    (folder / "items.csv").write_text("\n".join(rows) + "\n")
    return folder / "interactions.csv", folder / "items.csv"
