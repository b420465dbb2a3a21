"""Feature sets and their per-item, per-layer vectors.

Each feature set gets its own vectors table ``fv_<id>(item INTEGER, layer SMALLINT, vec T[dim])`` — one
row per item and layer, with a fixed-size DuckDB ARRAY so that a whole layer (or the whole tensor) comes
back as ONE contiguous Arrow buffer that numpy views without copying. float16 vectors are stored as the
raw bits in a SMALLINT array (DuckDB has no half type); float32 as FLOAT. A per-set table also makes
deleting a feature set a DROP instead of a scan. Measured in ``bench/bench_storage.py``.

A set created with ``storage="parquet"`` keeps the same rows in Parquet shards next to the database file
instead (``storage.parquet_features``: for catalogues too large for the database); every function here
dispatches on ``FeatureSetRecord.storage``, so callers never care which kind they hold.
"""
from __future__ import annotations

import json
import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from storage import owners
from storage.datasets import get_dataset, is_id, known_names, named_or_numbered
from storage.db import Database, NotFound
from storage.names import check_name
from storage.owners import Owner
from storage.records import FeatureSetRecord, feature_set_from_row

FLOAT16_SAFE = 60000.0  # beyond this magnitude float16 overflows; such sets are stored as float32
# float16 keeps a vector when its round trip changes it by at most this much, relative to the vector's norm;
# plain rounding gives <= 2^-11 ~ 4.9e-4, so only under- or overflow (subnormals, zeros, inf) cross the bound
FLOAT16_REL_TOL = 1e-3
STORAGE_KINDS = ("duckdb", "parquet")  # vectors in a per-set table, or in Parquet shards beside the file


def create_feature_set(db: Database, dataset: str | int, name: str, backbone: str, num_layers: int, dim: int,
                       *, kind: str = "hidden", inputs: list | tuple = ("title",), pooling: str = "all_mean",
                       params: dict | None = None, dtype: str = "float16", layer_names: list | None = None,
                       exist_ok: bool = False, storage: str = "duckdb",
                       owner: Owner | None = None) -> FeatureSetRecord:
    """Register a feature set and create its vectors table (or, ``storage="parquet"``, its shard folder).
    ``exist_ok`` resumes a same-shaped one. The set records who writes it: ``owner``'s job (its status then
    follows the job's, ``storage.queue``), and this process's identity (a set left running by a dead writer
    is known as such, ``writer_gone``)."""
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, not {dtype!r}")
    if storage not in STORAGE_KINDS:
        raise ValueError(f"storage must be one of {', '.join(STORAGE_KINDS)}, not {storage!r}")
    ds = get_dataset(db, dataset)
    writer = {"j": owner.job_id if owner else None, "w": owners.identity()}
    with db.session() as conn:
        owners.check(conn, owner)
        row = conn.execute(sa.text("SELECT * FROM feature_sets WHERE dataset_id = :d AND name = :n"),
                           {"d": ds.id, "n": name}).first()
        if row is not None:
            existing = feature_set_from_row(row)
            if row.status == "running" and row.writer != writer["w"] and owners.alive(row.writer) is not False:
                raise ValueError(f"feature set {name!r} is being written right now"
                                 + (f" by job {row.job_id}" if row.job_id else "")
                                 + "; wait for it to finish, or cancel that job first")
            if not exist_ok:
                raise ValueError(f"feature set {name!r} already exists for dataset {ds.name!r}; pick another "
                                 f"--name, or delete it first (delete-features {name} --dataset {ds.name})")
            if (existing.num_layers, existing.dim) != (num_layers, dim):
                raise ValueError(
                    f"feature set {name!r} exists with shape [{existing.num_layers}, {existing.dim}] per item, "
                    f"the new vectors are [{num_layers}, {dim}]; pick another --name")
            if existing.storage != storage:
                raise ValueError(f"feature set {name!r} exists with {existing.storage} storage, not {storage}; "
                                 f"resume it with --storage {'table' if existing.storage == 'duckdb' else 'parquet'} "
                                 "or pick another --name")
            conn.execute(sa.text("UPDATE feature_sets SET job_id = :j, writer = :w, status = 'running' "
                                 "WHERE id = :i"), {**writer, "i": existing.id})
            existing.status = "running"
            return existing
        check_name("feature set", name)  # a new set only: sets stored before the rule resume as they are
        fs_id = conn.execute(sa.text(
            "INSERT INTO feature_sets (dataset_id, name, backbone, kind, inputs, pooling, params, num_layers, "
            "dim, dtype, layer_names, status, location, job_id, writer) VALUES (:d, :n, :b, :k, :i, :p, :pa, :l, "
            ":dim, :dt, :ln, 'running', '', :j, :w) RETURNING id"),
            {**writer, "d": ds.id, "n": name, "b": backbone, "k": kind, "i": json.dumps(list(inputs)), "p": pooling,
             "pa": json.dumps(params or {}), "l": num_layers, "dim": dim, "dt": dtype,
             "ln": json.dumps(layer_names) if layer_names else None}).scalar_one()
        if storage == "parquet":
            from storage import parquet_features

            conn.execute(sa.text("UPDATE feature_sets SET storage = 'parquet', location = :l WHERE id = :i"),
                         {"l": parquet_features.prepare(db.path, fs_id), "i": fs_id})
            return feature_set_from_row(conn.execute(sa.text("SELECT * FROM feature_sets WHERE id = :i"), {"i": fs_id}).first())
        table = f"fv_{fs_id}"
        vec_type = "SMALLINT" if dtype == "float16" else "FLOAT"
        conn.execute(sa.text(f"CREATE TABLE {table} (item INTEGER NOT NULL, layer SMALLINT NOT NULL, "
                             f"vec {vec_type}[{dim}] NOT NULL)"))
        conn.execute(sa.text("UPDATE feature_sets SET location = :t WHERE id = :i"), {"t": table, "i": fs_id})
    return get_feature_set(db, fs_id)


def get_feature_set(db: Database, ref: str | int, dataset: str | int | None = None) -> FeatureSetRecord:
    """An ``int`` is an id and only an id (as for datasets, ``storage.datasets.get_dataset``: a set named like
    another's id never stands in for it); a ``str`` is a name (within ``dataset`` when given; names are unique
    per dataset), or a typed id when no set has that name."""
    if is_id(ref):
        with db.session() as conn:
            row = conn.execute(sa.text("SELECT * FROM feature_sets WHERE id = :i"), {"i": int(ref)}).first()
        if row is None:
            raise NotFound(f"no feature set with id {int(ref)}")
        return feature_set_from_row(row)
    ref, dataset_id = str(ref), get_dataset(db, dataset).id if dataset is not None else None
    with db.session() as conn:
        found = named_or_numbered(conn, "feature_sets", ref)
        rows = [r for r in found if r.name == ref and dataset_id in (None, r.dataset_id)] or \
               [r for r in found if ref.isdigit() and r.id == int(ref)]
        known = [] if rows else known_names(conn, "feature_sets")
    if not rows:
        hint = f"known feature sets: {', '.join(known)}" if known else "no feature set is stored yet"
        raise NotFound(f"no feature set {ref!r}; {hint}")
    if len(rows) > 1:
        raise ValueError(f"several datasets have a feature set named {ref!r}; say which dataset, or use its id")
    return feature_set_from_row(rows[0])


def list_feature_sets(db: Database, dataset: str | int | None = None) -> list[FeatureSetRecord]:
    with db.session() as conn:
        if dataset is None:
            rows = conn.execute(sa.text("SELECT * FROM feature_sets ORDER BY id")).fetchall()
        else:
            ds = get_dataset(db, dataset)
            rows = conn.execute(sa.text("SELECT * FROM feature_sets WHERE dataset_id = :d ORDER BY id"),
                                {"d": ds.id}).fetchall()
    return [feature_set_from_row(r) for r in rows]


UNFINISHED = ("running", "interrupted", "failed", "cancelled")


def unfinished_import(db: Database, dataset_id: int, name: str) -> FeatureSetRecord | None:
    """The feature set ``name`` of the dataset when it is an import (``params.source``) that never finished and
    whose writer is gone — what importing again resumes — else None. A set still being written by a live
    process is not returned (``create_feature_set`` then refuses it)."""
    with db.session() as conn:
        row = conn.execute(sa.text("SELECT * FROM feature_sets WHERE dataset_id = :d AND name = :n"),
                           {"d": int(dataset_id), "n": name}).first()
    if row is None or row.status not in UNFINISHED or not json.loads(row.params or "{}").get("source"):
        return None
    if row.status == "running" and owners.alive(row.writer) is not False:
        return None
    return feature_set_from_row(row)


def float16_error(feats: np.ndarray, chunk_rows: int = 65536) -> float:
    """The worst relative change ``|f16(x) - x| / |x|`` over the vectors (last axis) of ``feats``; ``inf`` when
    a value overflows float16. A nonzero vector that float16 flushes to zeros scores 1."""
    if feats.size == 0:
        return 0.0
    rows = np.asarray(feats).reshape(-1, feats.shape[-1])
    worst = 0.0
    for s in range(0, len(rows), chunk_rows):
        x = rows[s:s + chunk_rows].astype(np.float64)
        if np.abs(x).max(initial=0.0) > FLOAT16_SAFE:
            return float("inf")
        diff = np.linalg.norm(x.astype(np.float16).astype(np.float64) - x, axis=1)
        norm = np.linalg.norm(x, axis=1)
        rel = np.divide(diff, norm, out=np.zeros_like(diff), where=norm > 0)
        worst = max(worst, float(rel.max(initial=0.0)))
    return worst


def choose_dtype(feats: np.ndarray) -> tuple[str, str]:
    """``("float16" | "float32", why)``: float16 only when every vector survives the round trip within
    ``FLOAT16_REL_TOL`` (no overflow, no underflow to subnormals or zeros)."""
    err = float16_error(feats)
    if err == float("inf"):
        return "float32", f"values exceed float16's range (|x| > {FLOAT16_SAFE:g})"
    if err > FLOAT16_REL_TOL:
        return "float32", f"float16 would change some vectors by {err:.1%} (too small values underflow)"
    return "float16", f"float16 keeps every vector within {err:.1e} relative error"


def _to_storage(fs: FeatureSetRecord, feats: np.ndarray) -> np.ndarray:
    if fs.dtype == "float16":
        err = float16_error(feats)
        if err == float("inf"):
            raise OverflowError(f"feature values exceed the float16 range in feature set {fs.name!r}; "
                                "extract with dtype float32")
        if err > FLOAT16_REL_TOL:  # refuse to store zeros for values that were not zero
            raise OverflowError(f"float16 would change some vectors of feature set {fs.name!r} by {err:.1%} "
                                "(values too small for float16); extract with dtype float32")
        return np.ascontiguousarray(feats, dtype=np.float16).view(np.int16)
    return np.ascontiguousarray(feats, dtype=np.float32)


def write_vectors(db: Database, fs: FeatureSetRecord, item_idx: np.ndarray | list[int], feats: np.ndarray, *,
                  owner: Owner | None = None) -> None:
    """Store ``feats[b, num_layers, dim]`` for items ``item_idx[b]`` in one bulk insert (idempotent); with
    ``owner`` only while that claim holds its job."""
    item_idx = np.asarray(item_idx, dtype=np.int32)
    feats = np.asarray(feats)
    if feats.ndim != 3 or feats.shape[1:] != (fs.num_layers, fs.dim) or len(feats) != len(item_idx):
        raise ValueError(f"expected features of shape [{len(item_idx)}, {fs.num_layers}, {fs.dim}], "
                         f"got {list(feats.shape)}")
    if not np.isfinite(feats).all():
        raise ValueError("features contain NaN or infinite values; refusing to store them")
    n, layers, dim = feats.shape
    if fs.storage == "parquet":
        from storage import parquet_features

        if owner is not None:
            with db.session() as conn:
                owners.check(conn, owner)
        parquet_features.write(db.path, fs, item_idx, _to_storage(fs, feats))
        with db.session() as conn:
            conn.execute(sa.text("DELETE FROM feature_failures WHERE feature_set_id = :f AND item_idx IN :items")
                         .bindparams(sa.bindparam("items", expanding=True)),
                         {"f": fs.id, "items": [int(i) for i in item_idx]})
        return
    values = pa.array(_to_storage(fs, feats).reshape(-1))
    table = pa.table({
        "item": pa.array(np.repeat(item_idx, layers)),
        "layer": pa.array(np.tile(np.arange(layers, dtype=np.int16), n)),
        "vec": pa.FixedSizeListArray.from_arrays(values, dim),
    })
    with db.session() as conn:
        owners.check(conn, owner)
        raw = Database.raw(conn)
        raw.register("_vecs", table)
        raw.execute(f"DELETE FROM {fs.location} WHERE item IN (SELECT DISTINCT item FROM _vecs)")
        raw.execute(f"INSERT INTO {fs.location} SELECT item, layer, vec FROM _vecs")
        raw.unregister("_vecs")
        conn.execute(sa.text("DELETE FROM feature_failures WHERE feature_set_id = :f AND item_idx IN :items")
                     .bindparams(sa.bindparam("items", expanding=True)),
                     {"f": fs.id, "items": [int(i) for i in item_idx]})


def stored_items(db: Database, fs: FeatureSetRecord) -> set[int]:
    """Items whose vectors are stored — what a resumed extraction skips."""
    if fs.storage == "parquet":
        from storage import parquet_features

        return parquet_features.stored_items(db.path, fs)
    with db.session() as conn:
        rows = Database.raw(conn).execute(f"SELECT DISTINCT item FROM {fs.location}").fetchall()
    return {r[0] for r in rows}


def read_features(db: Database, fs: FeatureSetRecord, layers: list[int] | None = None,
                  dtype: np.dtype | type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The stored tensor ``[num_items, len(layers), dim]`` and a mask of items that have vectors.

    Rows are dataset item indices; items without vectors (failed or not yet extracted) are zeros and
    ``False`` in the mask. ``layers`` selects (and orders) layers; DuckDB reads only those.
    """
    layers = list(range(fs.num_layers)) if layers is None else [int(l) for l in layers]
    bad = [l for l in layers if not 0 <= l < fs.num_layers]
    if bad:
        raise ValueError(f"feature set {fs.name!r} has layers 0..{fs.num_layers - 1}; {bad} do not exist")
    if fs.storage == "parquet":
        from storage import parquet_features

        with db.session() as conn:
            num_items = conn.execute(sa.text("SELECT count(*) FROM items WHERE dataset_id = :d"),
                                     {"d": fs.dataset_id}).fetchall()[0][0]
        return parquet_features.read(db.path, fs, layers, num_items, dtype)
    position = np.full(fs.num_layers, -1, dtype=np.int64)
    position[layers] = np.arange(len(layers))
    with db.session() as conn:
        raw = Database.raw(conn)
        num_items = raw.execute("SELECT count(*) FROM items WHERE dataset_id = ?", [fs.dataset_id]).fetchall()[0][0]
        layer_list = ", ".join(str(l) for l in layers)
        table = raw.sql(f"SELECT item, layer, vec FROM {fs.location} WHERE layer IN ({layer_list})").to_arrow_table()
    store_dtype = np.float16 if fs.dtype == "float16" else np.float32
    out = np.zeros((num_items, len(layers), fs.dim), dtype=store_dtype)
    present = np.zeros(num_items, dtype=bool)
    for vec, item, layer in zip(table.column("vec").chunks, table.column("item").chunks, table.column("layer").chunks):
        flat = vec.values.to_numpy(zero_copy_only=True)
        if fs.dtype == "float16":
            flat = flat.view(np.float16)
        items = item.to_numpy()
        out[items, position[layer.to_numpy()]] = flat.reshape(-1, fs.dim)
        present[items] = True
    if out.dtype != np.dtype(dtype):
        out = out.astype(dtype)
    return out, present


def record_failure(db: Database, fs: FeatureSetRecord, item_idx: int, reason: str, *,
                   owner: Owner | None = None) -> None:
    with db.session() as conn:
        owners.check(conn, owner)
        conn.execute(sa.text("INSERT OR REPLACE INTO feature_failures (feature_set_id, item_idx, reason) "
                             "VALUES (:f, :i, :r)"), {"f": fs.id, "i": int(item_idx), "r": reason})


def failures(db: Database, fs: FeatureSetRecord) -> dict[int, str]:
    with db.session() as conn:
        rows = conn.execute(sa.text("SELECT item_idx, reason FROM feature_failures WHERE feature_set_id = :f "
                                    "ORDER BY item_idx"), {"f": fs.id}).fetchall()
    return {r[0]: r[1] for r in rows}


def store_captions(db: Database, fs: FeatureSetRecord, item_idx: list[int], texts: list[str], *,
                   owner: Owner | None = None) -> None:
    with db.session() as conn:
        owners.check(conn, owner)
        for i, text in zip(item_idx, texts):
            conn.execute(sa.text("INSERT OR REPLACE INTO captions (feature_set_id, item_idx, text) "
                                 "VALUES (:f, :i, :t)"), {"f": fs.id, "i": int(i), "t": text})


def captions(db: Database, fs: FeatureSetRecord) -> dict[int, str]:
    with db.session() as conn:
        rows = conn.execute(sa.text("SELECT item_idx, text FROM captions WHERE feature_set_id = :f"),
                            {"f": fs.id}).fetchall()
    return {r[0]: r[1] for r in rows}


def finish_feature_set(db: Database, fs: FeatureSetRecord, status: str, stats: dict | None = None, *,
                       owner: Owner | None = None) -> None:
    """Record how writing a feature set ended (and its stats); the writer lets go of it."""
    if owner is not None:
        with db.session() as conn:
            owners.check(conn, owner)
    if fs.storage == "parquet" and status != "running":
        from storage import parquet_features

        stats = {**(stats or {}), "shards": parquet_features.compact(db.path, fs),
                 "shard_bytes": parquet_features.size_bytes(db.path, fs)}
    with db.session() as conn:
        owners.check(conn, owner)
        conn.execute(sa.text("UPDATE feature_sets SET status = :s, stats = :st, "
                             "writer = CASE WHEN :s = 'running' THEN writer ELSE NULL END WHERE id = :i"),
                     {"s": status, "st": json.dumps({**fs.stats, **(stats or {})}), "i": fs.id})
    if status in ("complete", "partial"):
        db.checkpoint()  # the finished set lives in the main file, not only in the write-ahead log


def drop_feature_set_rows(conn: sa.Connection, fs_id: int) -> None:
    row = conn.execute(sa.text("SELECT location, storage FROM feature_sets WHERE id = :i"), {"i": fs_id}).first()
    if row is None:
        raise NotFound(f"no feature set with id {fs_id}")
    if row.storage == "duckdb" and row.location:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {row.location}"))
    if row.storage == "parquet" and row.location:
        from storage import parquet_features

        parquet_features.remove(conn.engine.url.database, row.location)
    for table in ("feature_failures", "captions"):
        conn.execute(sa.text(f"DELETE FROM {table} WHERE feature_set_id = :i"), {"i": fs_id})
    conn.execute(sa.text("DELETE FROM feature_sets WHERE id = :i"), {"i": fs_id})


def delete_feature_set(db: Database, fs: FeatureSetRecord) -> None:
    with db.session() as conn:
        drop_feature_set_rows(conn, fs.id)
