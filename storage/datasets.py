"""Datasets, items, users, interactions and their leave-one-out split."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from storage.lazy import pd
import pyarrow as pa
import sqlalchemy as sa

from storage.db import Database, NotFound
from storage.names import check_name


@dataclass
class DatasetRecord:
    id: int
    name: str
    source: str
    root: str | None
    params: dict
    stats: dict
    warnings: list = field(default_factory=list)
    created_at: object = None


def _record(row) -> DatasetRecord:
    return DatasetRecord(id=row.id, name=row.name, source=row.source, root=row.root,
                         params=json.loads(row.params), stats=json.loads(row.stats),
                         warnings=json.loads(row.warnings), created_at=row.created_at)


def store_dataset(db: Database, name: str, source: str, root: str | None, params: dict, stats: dict,
                  warnings: list, items: pd.DataFrame, users: pd.DataFrame,
                  interactions: pd.DataFrame) -> DatasetRecord:
    """Insert a whole dataset in ONE transaction, so a failure leaves nothing behind.

    ``items``: idx, item_id, title, video_path, cover_path, meta (JSON text);
    ``users``: idx, user_id; ``interactions``: user_idx, pos, item_idx, ts, role. ``name`` follows the one name
    rule (``storage.names``), trimmed.
    """
    name = check_name("dataset", name)
    with db.session() as conn:
        if conn.execute(sa.text("SELECT 1 FROM datasets WHERE name = :n"), {"n": name}).first():
            raise ValueError(f"a dataset named {name!r} already exists; choose another name or delete it "
                             f"first (python -m dff_core delete-dataset {name})")
        ds_id = conn.execute(sa.text(
            "INSERT INTO datasets (name, source, root, params, stats, warnings) "
            "VALUES (:name, :source, :root, :params, :stats, :warnings) RETURNING id"),
            {"name": name, "source": source, "root": root, "params": json.dumps(params),
             "stats": json.dumps(stats), "warnings": json.dumps(warnings)}).scalar_one()
        raw = Database.raw(conn)
        for table, frame, columns in (
                ("items", items, ["idx", "item_id", "title", "video_path", "cover_path", "meta"]),
                ("users", users, ["idx", "user_id"]),
                ("interactions", interactions, ["user_idx", "pos", "item_idx", "ts", "role"])):
            _bulk_insert(raw, table, frame[columns], ds_id)
        conn.execute(sa.text("INSERT INTO splits (dataset_id, name, params) VALUES (:d, 'leave_one_out', :p)"),
                     {"d": ds_id, "p": json.dumps({"test": "last item", "val": "second-last item"})})
    db.checkpoint()  # the import lives in the main file, not only in the write-ahead log (a torn log drops it)
    return get_dataset(db, name)


def _bulk_insert(raw, table: str, frame: pd.DataFrame, dataset_id: int) -> None:
    """One INSERT ... SELECT from an Arrow view of ``frame`` (no row-by-row inserts)."""
    columns = ", ".join(frame.columns)
    raw.register("_bulk", pa.Table.from_pandas(frame, preserve_index=False))
    try:
        raw.execute(f"INSERT INTO {table} (dataset_id, {columns}) SELECT {dataset_id}, {columns} FROM _bulk")
    finally:
        raw.unregister("_bulk")


def list_datasets(db: Database) -> list[DatasetRecord]:
    with db.session() as conn:
        rows = conn.execute(sa.text("SELECT * FROM datasets ORDER BY id")).fetchall()
    return [_record(r) for r in rows]


def is_id(ref: object) -> bool:
    """Whether a reference is an id passed by code (an integer, numpy's too), not text a person typed."""
    return isinstance(ref, (int, np.integer)) and not isinstance(ref, bool)


def named_or_numbered(conn, table: str, ref: str) -> list:
    """Rows of ``table`` whose name is ``ref`` or, when ``ref`` is a number, whose id is: one query for a lookup
    that pages make many times per view (the caller lets the name win)."""
    return conn.execute(sa.text(f"SELECT * FROM {table} WHERE name = :n OR id = :i"),
                        {"n": ref, "i": int(ref) if ref.isdigit() else -1}).fetchall()


def known_names(conn, table: str) -> list[str]:
    return [r[0] for r in conn.execute(sa.text(f"SELECT name FROM {table} ORDER BY id"))]


def get_dataset(db: Database, name_or_id: str | int) -> DatasetRecord:
    """An ``int`` is an id and only an id; a ``str`` is a name, or the number a person typed when no dataset has
    that name. Why: code passes ids between functions, and a dataset named like another's id (``1``, stored
    before names were checked) must never take over that dataset's feature sets and runs."""
    if is_id(name_or_id):
        with db.session() as conn:
            row = conn.execute(sa.text("SELECT * FROM datasets WHERE id = :i"), {"i": int(name_or_id)}).first()
        if row is None:
            raise NotFound(f"no dataset with id {int(name_or_id)}")
        return _record(row)
    ref = str(name_or_id)
    with db.session() as conn:
        rows = named_or_numbered(conn, "datasets", ref)
        row = next((r for r in rows if r.name == ref), rows[0] if rows else None)
        known = [] if row is not None else known_names(conn, "datasets")
    if row is None:
        hint = (f"known datasets: {', '.join(known)}" if known
                else "no dataset is stored yet (try: python -m dff_core demo)")
        raise NotFound(f"no dataset {name_or_id!r}; {hint}")
    return _record(row)


def load_items(db: Database, dataset_id: int) -> pd.DataFrame:
    """All items of a dataset ordered by idx (the row order of every feature tensor)."""
    with db.session() as conn:
        return Database.raw(conn).execute(
            "SELECT idx, item_id, title, video_path, cover_path, meta FROM items "
            "WHERE dataset_id = ? ORDER BY idx", [dataset_id]).df()


def load_interactions(db: Database, dataset_id: int) -> pd.DataFrame:
    with db.session() as conn:
        return Database.raw(conn).execute(
            "SELECT user_idx, pos, item_idx, ts, role FROM interactions "
            "WHERE dataset_id = ? ORDER BY user_idx, pos", [dataset_id]).df()


def load_split_arrays(db: Database, dataset_id: int) -> dict:
    """The stored leave-one-out split as in-memory sequences (dense 0-based item indices): the fields of
    ``dff_core.data.split.SplitData`` as a dict (storage imports no science; ``jobs.reads.load_split``
    wraps them)."""
    with db.session() as conn:
        raw = Database.raw(conn)
        inter = raw.sql("SELECT user_idx, item_idx, role FROM interactions WHERE dataset_id = ? "
                            "ORDER BY user_idx, pos", params=[dataset_id]).to_arrow_table()
        users = raw.execute("SELECT user_id FROM users WHERE dataset_id = ? ORDER BY idx",
                            [dataset_id]).fetchall()
        num_items = raw.execute("SELECT count(*) FROM items WHERE dataset_id = ?", [dataset_id]).fetchall()[0][0]
    user_idx = inter.column("user_idx").to_numpy()
    item_idx = inter.column("item_idx").to_numpy().astype(np.int64)
    role = np.asarray(inter.column("role").to_pylist())
    bounds = np.flatnonzero(np.diff(user_idx)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(user_idx)]])
    train, val, test, uids = [], [], [], []
    for s, e in zip(starts, ends):
        r = role[s:e]
        train.append(item_idx[s:e][r == "train"])
        val.append(item_idx[s:e][r == "val"][0])
        test.append(item_idx[s:e][r == "test"][0])
        uids.append(users[user_idx[s]][0])
    return dict(num_items=int(num_items), user_ids=uids, train=train,
                val_target=np.asarray(val, dtype=np.int64), test_target=np.asarray(test, dtype=np.int64))
