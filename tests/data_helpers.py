"""Small datasets written on the fly for the import / storage / jobs tests (imported by name: a test module
never imports ``conftest``, since tests/ and tests/browser/ each have one and the second shadows the first)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MICROLENS = ROOT.parent / "shared" / "data" / "microlens"


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


def strip_times(history: list[dict]) -> list[dict]:
    """A training history without its wall-clock fields: what two identical runs must agree on."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds")} for r in history]
