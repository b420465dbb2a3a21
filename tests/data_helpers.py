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


def dataset_with_features(folder: Path, n_users: int, n_items: int, seq: int = 8, layers: int = 4, dim: int = 16, *,
                          dataset: str = "d", features: str = "f", backbone: str = "imported",
                          db_file: str = "s.duckdb"):
    """A database in ``folder`` (``db_file``) holding dataset ``dataset`` (``write_generic``) and a random feature set
    ``features`` (``layers`` x ``dim`` per item, seeded), imported as a user would: the shared start of the tests
    that need stored runs or sweeps."""
    import numpy as np

    from jobs.datasets import import_generic
    from jobs.workflows import import_features_npz
    from storage import Database

    db = Database(folder / db_file)
    import_generic(db, dataset, *write_generic(folder / "d", n_users=n_users, n_items=n_items, seq=seq))
    rng = np.random.default_rng(0)
    np.savez(folder / "f.npz", item_ids=np.array([f"i{i}" for i in range(n_items)]),
             features=rng.normal(size=(n_items, layers, dim)).astype(np.float32))
    import_features_npz(db, features, dataset, folder / "f.npz", backbone=backbone)
    return db
