"""Import datasets into storage: read + validate + preprocess, then one all-or-nothing transaction."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from dff_core.data.importers import Preprocessing, RawDataset, prepare, read_generic, read_microlens
from storage.datasets import DatasetRecord, NotFound, get_dataset, store_dataset
from storage.removal import delete_dataset
from storage.db import Database
from storage.names import check_name

DEMO_NAME = "demo"


def _store(db: Database, name: str, raw: RawDataset, pre: Preprocessing | None) -> DatasetRecord:
    name = check_name("dataset", name)  # before the files are read: a bad name costs no parsing
    prepared = prepare(raw, pre)
    return store_dataset(db, name, raw.source, str(raw.root) if raw.root else None, prepared.params,
                         prepared.stats, prepared.warnings, prepared.items, prepared.users,
                         prepared.interactions)


def import_microlens(db: Database, name: str, folder: str | Path, pre: Preprocessing | None = None) -> DatasetRecord:
    return _store(db, name, read_microlens(folder), pre)


def import_generic(db: Database, name: str, interactions: str | Path, items: str | Path,
                   media: str | Path | None = None, pre: Preprocessing | None = None,
                   source: str = "generic") -> DatasetRecord:
    return _store(db, name, read_generic(interactions, items, media, source=source), pre)


def upload_folder(db: Database, name: str) -> Path:
    """``uploads/<slug>-<hash>/`` under the database folder: the slug keeps it readable, the hash of the exact
    name keeps it unique (``a b`` and ``a_b`` differ) and no name (``..``, ``/x``) leaves ``uploads/``."""
    import hashlib
    import re

    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:40] or "dataset"
    return db.path.parent / "uploads" / f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def import_uploads(db: Database, name: str, interactions: tuple[str, bytes], items: tuple[str, bytes],
                   media: str | Path | None = None, pre: Preprocessing | None = None) -> DatasetRecord:
    """Import uploaded ``(file name, bytes)`` files: the name is validated and checked free *before* anything
    is written, and a failed import removes what it wrote, so a refused upload never touches another
    dataset's files."""
    name = check_name("dataset", name)
    try:
        get_dataset(db, name)
    except NotFound:
        pass
    else:
        raise ValueError(f"a dataset named {name!r} already exists; choose another name or delete it first")
    folder = upload_folder(db, name)
    shutil.rmtree(folder, ignore_errors=True)  # left by a deleted dataset of the same name: no one refers to it
    folder.mkdir(parents=True)
    try:
        paths = []
        for role, (filename, data) in (("interactions", interactions), ("items", items)):
            suffix = Path(filename).suffix.lower()
            if suffix not in (".csv", ".parquet", ".pq"):
                raise ValueError(f"{filename}: upload a .csv (or .parquet for interactions) file")
            path = folder / f"{role}{suffix}"   # fixed names: an uploaded file name never becomes a path
            path.write_bytes(data)
            paths.append(path)
        return import_generic(db, name, paths[0], paths[1], media, pre)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def ensure_demo(db: Database, progress: Callable[[str, int, int], None] | None = None,
                rebuild: bool = False) -> DatasetRecord:
    """Build the seeded demo clips next to the database (once) and import them as dataset ``demo``."""
    if not rebuild:
        try:
            return get_dataset(db, DEMO_NAME)
        except NotFound:
            pass
    from dff_core.demo import build_demo

    folder = db.path.parent / "demo"
    if rebuild or not (folder / "interactions.csv").exists():
        # build aside and rename, so a killed build never leaves a half demo that looks complete
        staging = folder.with_name("demo.building")
        shutil.rmtree(staging, ignore_errors=True)
        build_demo(staging, progress=progress)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    if rebuild:
        try:
            delete_dataset(db, DEMO_NAME)
        except NotFound:
            pass
    return import_generic(db, DEMO_NAME, folder / "interactions.csv", folder / "items.csv", folder, source="demo")
