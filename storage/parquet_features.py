"""Feature sets stored as Parquet shards next to the database file, read in place by DuckDB.

A real catalogue does not fit in the database: a 7B LVLM gives ~270 KB per item (33 layers x 4096 dims in
float16), so a million videos is ~270 GB. A feature set with ``storage = 'parquet'`` keeps its vectors in
``<db dir>/features/<db file stem>/<set id>/part-*.parquet`` (the registry row stays in ``feature_sets``,
``location`` holds the folder relative to the database's folder, so the two move together). The file stem
in the path keeps two databases in one folder from sharing set ids.

Shard layout — the same columns as the table kind: ``item INT32, layer INT16, vec`` where ``vec`` is one
fixed-length binary value of ``dim`` little-endian float16 (or float32) numbers, as the schema metadata
``dff.vec`` says. A Parquet list of numbers would cost repetition levels per number, and DuckDB would widen
float16 lists to float32; a fixed-length binary stores exactly 2 bytes a number, uncompressed (hidden
states do not compress), and comes back as one buffer numpy views without copying. Rows are sorted by
(layer, item) with one row group per layer, so a query for a few layers skips the other row groups by
their min/max statistics: training, probes and neighbours read only the layers they ask for.

Writes append a new shard per batch (written to a temporary name, then renamed: readers never see half a
file). An item written again (a retried item) appears in a later shard; readers fill the tensor in shard
order, so the newest write wins, and :func:`compact` (run when the set is finished) merges small shards
and drops the superseded rows. Reads stream record batches, so the peak memory is the output tensor plus
one batch, not the whole Arrow table.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from storage.db import Database
    from storage.records import FeatureSetRecord

SHARD_GLOB = "part-*.parquet"
FEATURES_DIR = "features"
TARGET_SHARD_BYTES = int(float(os.environ.get("DFF_PARQUET_SHARD_MB", "128")) * 2**20)
READ_BATCH_ROWS = 8192


def relative_location(db_path: str | Path, fs_id: int) -> str:
    """Where set ``fs_id`` keeps its shards, relative to the database's folder."""
    return f"{FEATURES_DIR}/{Path(db_path).stem}/{int(fs_id)}"


def folder(db_path: str | Path, location: str) -> Path:
    return Path(db_path).resolve().parent / location


def prepare(db_path: str | Path, fs_id: int) -> str:
    """Create an empty shard folder for a new set; returns its location. A leftover folder with the same id
    (from a database file that was deleted and made again) holds someone else's vectors: it is cleared."""
    location = relative_location(db_path, fs_id)
    path = folder(db_path, location)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return location


def shards(path: Path) -> list[Path]:
    """Shard files in write order (names start with a zero-padded nanosecond clock)."""
    return sorted(path.glob(SHARD_GLOB)) if path.is_dir() else []


def _new_name(path: Path, key: str | None = None) -> Path:
    key = key or f"{time.time_ns():020d}"
    return path / f"part-{key}-{uuid.uuid4().hex[:8]}.parquet"


def _key(shard: Path) -> str:
    return shard.name.split("-")[1]


def _table(item_idx: np.ndarray, values: np.ndarray) -> pa.Table:
    """Rows sorted by (layer, item) from ``values[n, layers, dim]`` (storage dtype: int16 bits or float32)."""
    n, layers, dim = values.shape
    order = np.argsort(item_idx, kind="stable")
    by_layer = np.ascontiguousarray(values[order].transpose(1, 0, 2))
    kind = "float16" if by_layer.dtype.itemsize == 2 else "float32"
    vec = pa.FixedSizeBinaryArray.from_buffers(pa.binary(dim * by_layer.dtype.itemsize), n * layers,
                                               [None, pa.py_buffer(by_layer.astype(by_layer.dtype.newbyteorder("<"),
                                                                                   copy=False).tobytes())])
    table = pa.table({"item": pa.array(np.tile(item_idx[order].astype(np.int32), layers)),
                      "layer": pa.array(np.repeat(np.arange(layers, dtype=np.int16), n)), "vec": vec})
    return table.replace_schema_metadata({"dff.vec": f"{kind} little-endian x {dim}"})


def _vectors(col: pa.Array, row_bytes: int) -> np.ndarray:
    """The bytes of a binary ``vec`` column (fixed or variable width, as DuckDB returns BLOBs) as uint8
    ``[rows, row_bytes]``, without copying; a row of another width means foreign shards."""
    n = len(col)
    buffers = col.buffers()
    if pa.types.is_fixed_size_binary(col.type):
        if col.type.byte_width != row_bytes:
            raise ValueError(f"vectors are {col.type.byte_width} bytes, not {row_bytes}")
        start, stop = col.offset * row_bytes, (col.offset + n) * row_bytes
    else:
        width = np.int64 if pa.types.is_large_binary(col.type) else np.int32
        offsets = np.frombuffer(buffers[1], dtype=width)[col.offset:col.offset + n + 1]
        if n and not (np.diff(offsets) == row_bytes).all():
            raise ValueError(f"vectors are not all {row_bytes} bytes")
        start, stop = (int(offsets[0]), int(offsets[-1])) if n else (0, 0)
    return np.frombuffer(buffers[2], dtype=np.uint8)[start:stop].reshape(n, row_bytes)


def _write(path: Path, table: pa.Table, rows_per_layer: int, key: str | None = None) -> Path:
    """One shard, atomically: a temporary file renamed into place once complete."""
    target = _new_name(path, key)
    tmp = path / f".tmp-{target.name}"
    pq.write_table(table, tmp, row_group_size=max(1, rows_per_layer),
                   compression={"item": "snappy", "layer": "snappy", "vec": "none"},
                   use_dictionary=["item", "layer"], write_statistics=["item", "layer"])
    os.replace(tmp, target)
    return target


def write(db_path: str | Path, fs: "FeatureSetRecord", item_idx: np.ndarray, values: np.ndarray) -> None:
    """Append one shard holding ``values[n, layers, dim]`` (already in storage dtype) for ``item_idx``."""
    path = folder(db_path, fs.location)
    path.mkdir(parents=True, exist_ok=True)
    _write(path, _table(np.asarray(item_idx, dtype=np.int32), values), len(item_idx))


def _connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB: reading shards never takes the database file's lock."""
    return duckdb.connect(":memory:", config={"threads": max(1, min(4, os.cpu_count() or 1))})


def _file_list(files: list[Path]) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


def stored_items(db_path: str | Path, fs: "FeatureSetRecord") -> set[int]:
    files = shards(folder(db_path, fs.location))
    if not files:
        return set()
    with _connect() as con:
        rows = con.execute(f"SELECT DISTINCT item FROM read_parquet({_file_list(files)})").fetchall()
    return {r[0] for r in rows}


def read(db_path: str | Path, fs: "FeatureSetRecord", layers: list[int], num_items: int,
         dtype: np.dtype | type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``[num_items, len(layers), dim]`` and a present mask, filled batch by batch in shard order."""
    store_dtype = np.float16 if fs.dtype == "float16" else np.float32
    position = np.full(fs.num_layers, -1, dtype=np.int64)
    position[layers] = np.arange(len(layers))
    out = np.zeros((num_items, len(layers), fs.dim), dtype=store_dtype)
    present = np.zeros(num_items, dtype=bool)
    for attempt in range(3):
        try:
            _fill(db_path, fs, layers, position, out, present)
            break
        except duckdb.IOException:
            if attempt == 2:  # a compaction swapped the files under us twice; give up loudly
                raise
            out[:] = 0
            present[:] = False
    if out.dtype != np.dtype(dtype):
        out = out.astype(dtype)
    return out, present


def _fill(db_path, fs, layers, position, out, present) -> None:
    num_items = len(out)
    files = shards(folder(db_path, fs.location))
    if files:
        layer_list = ", ".join(str(int(l)) for l in layers)
        with _connect() as con:
            con.execute("SET preserve_insertion_order = true")
            reader = con.sql(f"SELECT item, layer, vec FROM read_parquet({_file_list(files)}) "
                                 f"WHERE layer IN ({layer_list})").to_arrow_reader(READ_BATCH_ROWS)
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                store = np.dtype(np.float16 if fs.dtype == "float16" else np.float32).newbyteorder("<")
                try:
                    flat = _vectors(batch.column("vec"), fs.dim * store.itemsize).view(store)
                except ValueError as exc:
                    raise ValueError(f"feature set {fs.name!r}: a shard in {fs.location} does not belong to this "
                                     f"set ({exc}; expected {fs.dim} {fs.dtype} numbers)") from None
                items = batch.column("item").to_numpy()
                if items.size and items.max() >= num_items:
                    raise ValueError(f"feature set {fs.name!r}: shard rows name item {int(items.max())} but the "
                                     f"dataset has {num_items} items; the shards do not belong to this set")
                out[items, position[batch.column("layer").to_numpy()]] = flat.reshape(-1, fs.dim)
                present[items] = True


def compact(db_path: str | Path, fs: "FeatureSetRecord", target_bytes: int = TARGET_SHARD_BYTES) -> int:
    """Merge runs of consecutive small shards into ~``target_bytes`` files (newest row per item and layer
    wins, sorted by layer so row groups prune). Memory stays around one output file. Returns shards left."""
    path = folder(db_path, fs.location)
    files = shards(path)
    groups: list[list[Path]] = []
    current: list[Path] = []
    size = 0
    for f in files:
        current.append(f)
        size += f.stat().st_size
        if size >= target_bytes:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    for group in groups:
        if len(group) == 1:
            continue
        tables = [pq.read_table(f) for f in group]
        merged = pa.concat_tables([t.cast(tables[0].schema) for t in tables])
        items = merged.column("item").to_numpy()
        layers = merged.column("layer").to_numpy()
        vec = merged.column("vec").combine_chunks()  # fixed-size binary: pyarrow keeps the schema
        # newest wins: keep the last occurrence of each (item, layer)
        key = items.astype(np.int64) * fs.num_layers + layers
        _, last = np.unique(key[::-1], return_index=True)
        keep = len(key) - 1 - last
        keep = keep[np.lexsort((items[keep], layers[keep]))]
        table = pa.table({"item": pa.array(items[keep]), "layer": pa.array(layers[keep]), "vec": vec.take(pa.array(keep))})
        table = table.replace_schema_metadata({k: v for k, v in (tables[-1].schema.metadata or {}).items()
                                               if k == b"dff.vec"})
        n_items = len(np.unique(items[keep]))
        _write(path, table, n_items, key=_key(group[-1]))  # sorts where the group's newest shard was
        for f in group:
            f.unlink()
    return len(shards(path))


def size_bytes(db_path: str | Path, fs: "FeatureSetRecord") -> int:
    return sum(f.stat().st_size for f in shards(folder(db_path, fs.location)))


def remove(db_path: str | Path, location: str) -> None:
    """Delete a set's shard folder (and the per-database folder when it is left empty)."""
    path = folder(db_path, location)
    if path.is_dir():
        shutil.rmtree(path)
    try:
        path.parent.rmdir()
    except OSError:
        pass
