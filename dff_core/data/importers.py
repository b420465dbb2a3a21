"""Read, validate and preprocess datasets: the MicroLens layout and a generic CSV/Parquet layout.

Readers return a ``RawDataset`` (items + time-ordered interactions with external ids); ``prepare``
turns it into dense tables with the leave-one-out roles, ready to store in one transaction. Every
problem is a ``DataError`` naming the file, the line and what to do; problems that do not invalidate
the data (a missing media file, an item nobody watched) become warnings and counts instead.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


class DataError(ValueError):
    """Bad input data; the message says which file, which line and what to do."""


@dataclass
class RawDataset:
    """External-id tables as read from disk, before preprocessing."""

    items: pd.DataFrame          # item_id (str), title, video_path, cover_path, meta (dict)
    interactions: pd.DataFrame   # user_id (str), item_id (str), ts (Int64 or NA), order (int, file order)
    root: Path | None
    source: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class PreparedDataset:
    items: pd.DataFrame          # idx, item_id, title, video_path, cover_path, meta (JSON text)
    users: pd.DataFrame          # idx, user_id
    interactions: pd.DataFrame   # user_idx, pos, item_idx, ts, role
    stats: dict
    params: dict
    warnings: list[str]


@dataclass
class Preprocessing:
    """The paper's preprocessing, configurable: drop short users, keep each user's last N items."""

    min_interactions: int = 5
    max_items_per_user: int | None = None
    # keep only the N most-interacted items (before the user filter): a dense, cheaper catalogue when extracting
    # features for every item of a large one is out of reach on the machine at hand
    top_items: int | None = None

    def __post_init__(self) -> None:
        if self.top_items is not None and self.top_items < 1:
            raise DataError("top_items must be at least 1 (or unset)")
        if self.min_interactions < 3:
            raise DataError("min_interactions must be at least 3: leave-one-out needs a training, a validation "
                            "and a test item per user")
        if self.max_items_per_user is not None and self.max_items_per_user < 3:
            raise DataError("max_items_per_user must be at least 3 (or unset)")


# ----------------------------------------------------------------------------------------------- readers

def _require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} not found: {path} — check the path")
    if not path.is_file():
        raise DataError(f"{what} is not a file: {path}")
    return path


def _find_one(folder: Path, patterns: list[str], what: str, required: bool = True) -> Path | None:
    for pattern in patterns:
        hits = sorted(folder.glob(pattern))
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise DataError(f"{folder}: several files could be the {what} ({', '.join(h.name for h in hits)}); "
                            "keep one, or import with --interactions/--items")
    if required:
        raise DataError(f"{folder}: no {what} found (looked for {', '.join(patterns)})")
    return None


def read_microlens(folder: str | Path) -> RawDataset:
    """A folder laid out like MicroLens: ``*pairs*.tsv`` (user TAB items in time order), ``*titles*.csv``
    (``item,title``), optional ``*metadata*.csv`` (``item_id,...``), optional ``covers/<id>.jpg`` and
    ``videos/<id>.mp4``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"MicroLens folder not found: {folder}")
    pairs_path = _find_one(folder, ["*pairs*.tsv", "*pairs*.txt"], "interaction pairs file (*pairs*.tsv)")
    titles_path = _find_one(folder, ["*titles*.csv", "*title*.csv"], "titles file (*titles*.csv)")
    meta_path = _find_one(folder, ["*metadata*.csv"], "item metadata file", required=False)

    users, items, orders, lines = [], [], [], []
    with open(pairs_path, "rb") as fh:
        for line_no, raw_line in enumerate(fh, start=1):
            try:
                line = raw_line.decode("utf-8-sig" if line_no == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise DataError(f"{pairs_path.name} line {line_no}: not UTF-8 text (byte {exc.start + 1} of the line); "
                                "save the file as UTF-8") from None
            if not line.strip():
                continue
            user, sep, rest = line.partition("\t")
            tokens = rest.split()
            if not sep or not user.strip() or not tokens:
                raise DataError(f"{pairs_path.name} line {line_no}: expected 'user<TAB>item item ...', "
                                f"got {line[:80]!r}; fix or remove that line")
            users.extend([user.strip()] * len(tokens))
            items.extend(tokens)
            orders.extend(range(len(tokens)))
            lines.extend([line_no] * len(tokens))
    interactions = pd.DataFrame({"user_id": users, "item_id": items, "order": orders, "_line": lines})
    interactions["ts"] = pd.array([pd.NA] * len(interactions), dtype="Int64")

    _, item_table, _, title_warnings = _read_items(titles_path, ["item", "item_id"])

    meta = {}
    if meta_path is not None:
        frame = _read_csv(meta_path)
        id_col = _pick_column(frame, ["item_id", "item", "video_id"], meta_path)
        frame[id_col] = frame[id_col].astype(str).str.strip()
        skip = {id_col, "cover_file", "video_file"}
        cols = [c for c in frame.columns if c not in skip]
        frame = _numeric_columns(frame, cols)
        for rec in frame[[id_col] + cols].to_dict("records"):
            key = rec.pop(id_col)
            meta[key] = {k: (None if pd.isna(v) else v) for k, v in rec.items()}
    item_table["meta"] = [meta.get(i, {}) for i in item_table["item_id"]]

    covers, videos = folder / "covers", folder / "videos"
    item_table["video_path"] = [f"videos/{i}.mp4" if (videos / f"{i}.mp4").exists() else None
                                for i in item_table["item_id"]]
    item_table["cover_path"] = [f"covers/{i}.jpg" if (covers / f"{i}.jpg").exists() else None
                                for i in item_table["item_id"]]
    raw = RawDataset(items=item_table, interactions=interactions, root=folder.resolve(), source="microlens",
                     warnings=title_warnings)
    _check_confined(raw, titles_path)  # an item id like '../x' or a symlinked cover must not leave the folder
    _check_unknown_items(raw, pairs_path)
    return raw


def read_generic(interactions_path: str | Path, items_path: str | Path, media_dir: str | Path | None = None,
                 source: str = "generic") -> RawDataset:
    """Interactions CSV/Parquet ``user_id,item_id[,timestamp]`` plus items CSV
    ``item_id,title[,video_path,cover_path,...]``; media paths are relative to ``media_dir`` (default: the
    items file's folder). Extra item columns are kept as free metadata."""
    interactions_path = _require_file(Path(interactions_path), "interactions file")
    items_path = _require_file(Path(items_path), "items file")
    root = Path(media_dir) if media_dir is not None else items_path.parent
    if media_dir is not None and not root.is_dir():
        raise DataError(f"media folder not found: {root}")

    if interactions_path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(interactions_path)
        except Exception as exc:  # pyarrow raises many types for a broken file
            raise DataError(f"{interactions_path.name}: not a readable Parquet file ({exc})") from exc
        where = "row"  # Parquet has rows, not lines: report row numbers
    else:
        frame = _read_csv(interactions_path)
        where = "line"
    rows = (np.arange(len(frame), dtype=np.int64) + 1 if where == "row"
            else _file_lines(interactions_path, len(frame)))
    user_col = _pick_column(frame, ["user_id", "user"], interactions_path)
    item_col = _pick_column(frame, ["item_id", "item"], interactions_path)
    ts_col = next((c for c in ("timestamp", "ts", "time") if c in frame.columns), None)
    for col in (user_col, item_col):
        empty = frame[col].isna() | (frame[col].astype(str).str.strip() == "")
        if empty.any():
            first = int(np.flatnonzero(empty.to_numpy())[0])
            n = int(rows[first])
            raise DataError(f"{interactions_path.name} {where} {n}: empty {col}; every interaction needs a user "
                            "and an item")
    interactions = pd.DataFrame({"user_id": frame[user_col].astype(str).str.strip(),
                                 "item_id": frame[item_col].astype(str).str.strip()})
    if ts_col is not None:
        ts = pd.to_numeric(frame[ts_col], errors="coerce")
        if ts.isna().any():
            first = int(np.flatnonzero(ts.isna().to_numpy())[0])
            n = int(rows[first])
            raise DataError(f"{interactions_path.name} {where} {n}: {ts_col} {frame[ts_col].iloc[first]!r} "
                            "is not a number; use integer or float timestamps (e.g. Unix seconds)")
        interactions["ts"] = ts.round().astype("Int64")
    else:
        interactions["ts"] = pd.array([pd.NA] * len(interactions), dtype="Int64")
    interactions["_line"] = rows
    interactions["order"] = interactions.groupby("user_id", sort=False).cumcount()

    items, table, (id_col, title_col), title_warnings = _read_items(items_path, ["item_id", "item"])
    for col in ("video_path", "cover_path"):
        table[col] = items[col].where(items[col].notna(), None) if col in items.columns else None
    extra = [c for c in items.columns if c not in {id_col, title_col, "video_path", "cover_path"}]
    items = _numeric_columns(items, extra)
    table["meta"] = [{k: (None if pd.isna(v) else v) for k, v in rec.items()}
                     for rec in items[extra].to_dict("records")] if extra else [{} for _ in range(len(table))]
    raw = RawDataset(items=table, interactions=interactions, root=root.resolve(), source=source,
                     warnings=title_warnings)
    _check_unknown_items(raw, interactions_path, where=where)
    _check_confined(raw, items_path)
    raw.warnings.extend(_check_media(raw))
    return raw


def _read_items(path: Path, id_names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, str], list[str]]:
    """An items file as read (``raw``), its ``item_id, title, _line`` table (duplicate ids refused, long titles
    cut), the id and title columns it used, and the title warnings: the part MicroLens and generic share."""
    raw = _read_csv(path)
    if raw.empty:  # a header and nothing else: say so, rather than "item ... is not in the items file" later
        size = path.stat().st_size
        raise DataError(f"{path.name}: no item rows after the header line ({size:,} bytes in one line); each item "
                        "needs its own line — were the file's line breaks lost?")
    id_col = _pick_column(raw, id_names, path)
    title_col = _pick_column(raw, ["title"], path)
    table = pd.DataFrame({"item_id": raw[id_col].astype(str).str.strip(), "title": raw[title_col].fillna("").astype(str)})
    table["_line"] = _file_lines(path, len(table))
    _check_duplicate_ids(table, path)
    return raw, table, (id_col, title_col), _cap_titles(table, path)


MAX_TITLE_CHARS = 2000  # longer titles are cut (with a warning): a pasted 10 MB "title" is not a title


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True,
                           encoding="utf-8-sig")
    except pd.errors.ParserError as exc:
        line, what = _locate_csv_problem(path)
        where = f" line {line}" if line else ""
        raise DataError(f"{path.name}{where}: malformed CSV — {what or str(exc).strip()}; fix that line (quote "
                        "fields that contain commas)") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name}: the file is empty") from None
    except UnicodeDecodeError as exc:
        data = path.read_bytes()
        start = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data[:start].count(b"\n") + 1
        column = start - data.rfind(b"\n", 0, start)
        raise DataError(f"{path.name} line {line}: not UTF-8 text (byte {column} of the line); save the file as "
                        "UTF-8") from None


def _csv_records(path: Path):
    """(first file line, fields) of every non-empty CSV record, as pandas reads them (blank lines skipped,
    quoted fields may span lines)."""
    import csv

    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        last = 0
        for fields in reader:
            start, last = last + 1, reader.line_num
            if fields and any(f.strip() for f in fields):
                yield start, fields


def _file_lines(path: Path, n_rows: int) -> np.ndarray:
    """The file line on which each of the first ``n_rows`` data rows starts (the header is line 1 or later)."""
    import csv

    try:
        starts = [start for start, _ in _csv_records(path)][1:]  # without the header
    except (csv.Error, UnicodeDecodeError, OSError):
        starts = []
    if len(starts) == n_rows:
        return np.asarray(starts, dtype=np.int64)
    return np.arange(n_rows, dtype=np.int64) + 2  # a file csv reads differently from pandas: best guess


def _locate_csv_problem(path: Path) -> tuple[int | None, str | None]:
    """The file line where the first bad record starts: more fields than the header, or an unclosed quote."""
    import csv

    header, end = None, 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, strict=True)
            for fields in reader:
                start, end = end + 1, reader.line_num
                if not fields or not any(f.strip() for f in fields):
                    continue
                if header is None:
                    header = len(fields)
                elif len(fields) > header:
                    return start, f"expected {header} fields, found {len(fields)}"
    except csv.Error as exc:
        return _next_record_line(path, end), f"unreadable record ({exc})"
    except UnicodeDecodeError:
        pass
    return None, None


def _next_record_line(path: Path, after: int) -> int:
    """The line a quoted field that never closes starts on: the first non-blank line after ``after``."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for line_no, line in enumerate(fh, start=1):
            if line_no > after and line.strip():
                return line_no
    return after + 1


def _cap_titles(table: pd.DataFrame, path: Path) -> list[str]:
    """Cut titles longer than ``MAX_TITLE_CHARS``; one warning says how many and where the first one is."""
    long = table["title"].str.len() > MAX_TITLE_CHARS
    if not long.any():
        return []
    first = table.loc[long].iloc[0]
    table.loc[long, "title"] = table.loc[long, "title"].str.slice(0, MAX_TITLE_CHARS)
    return [f"{int(long.sum())} title(s) longer than {MAX_TITLE_CHARS:,} characters were cut to {MAX_TITLE_CHARS:,} "
            f"(first: item {first['item_id']} on {path.name} line {first['_line']})"]


def _numeric_columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """CSV cells are read as text; metadata columns that are entirely numeric become numbers."""
    frame = frame.copy()
    for col in columns:
        converted = pd.to_numeric(frame[col], errors="coerce")
        if converted.notna().sum() == frame[col].notna().sum():
            frame[col] = converted
    return frame


def _pick_column(frame: pd.DataFrame, names: list[str], path: Path) -> str:
    columns = {c.strip().lower(): c for c in frame.columns}
    for name in names:
        if name in columns:
            return columns[name]
    raise DataError(f"{path.name}: missing column {names[0]!r} (found: {', '.join(map(str, frame.columns))}); "
                    f"the header must name it")


def _check_duplicate_ids(table: pd.DataFrame, path: Path) -> None:
    dup = table["item_id"].duplicated(keep=False)
    if dup.any():
        first = table.loc[dup, "item_id"].iloc[0]
        lines = table.loc[table["item_id"] == first, "_line"].tolist()
        raise DataError(f"{path.name}: item id {first!r} appears more than once (lines {', '.join(map(str, lines[:5]))})"
                        f"; {int(dup.sum())} rows share an id with another row — item ids must be unique")


def _check_unknown_items(raw: RawDataset, path: Path, where: str = "line") -> None:
    known = set(raw.items["item_id"])
    unknown = ~raw.interactions["item_id"].isin(known)
    if unknown.any():
        bad = raw.interactions.loc[unknown]
        first = bad.iloc[0]
        raise DataError(f"{path.name} {where} {first['_line']}: item {first['item_id']!r} is not in the items/titles file; "
                        f"{int(unknown.sum())} interactions ({bad['item_id'].nunique()} distinct items) refer to "
                        "unknown items — add them to the items file or remove those interactions")


def _check_confined(raw: RawDataset, path: Path) -> None:
    """Refuse any media path that resolves outside the media folder (absolute, '..', or a symlink out)."""
    from dff_core.data.media import MediaEscape, confine

    for col in ("video_path", "cover_path"):
        if col not in raw.items or raw.items[col].isna().all():
            continue
        for value, line in zip(raw.items[col], raw.items["_line"]):
            if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
                continue
            try:
                confine(raw.root, str(value))
            except MediaEscape as exc:
                raise DataError(f"{path.name} line {line}: {col} refused — {exc}; media must lie inside the media "
                                "folder (--media)") from None


def _check_media(raw: RawDataset) -> list[str]:
    warnings = []
    for col, label in (("video_path", "video"), ("cover_path", "cover")):
        missing = 0
        example = None
        values = []
        for value in raw.items[col]:
            if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
                values.append(None)
                continue
            full = raw.root / Path(str(value))  # confined already (_check_confined)
            if full.is_file():
                values.append(str(value))
            else:
                missing += 1
                example = example or str(full)
                values.append(None)
        raw.items[col] = values
        if missing:
            warnings.append(f"{missing} {label} file(s) are missing (e.g. {example}); those items are kept "
                            f"without a {label}")
    return warnings


# ---------------------------------------------------------------------------------------- preprocessing

def prepare(raw: RawDataset, pre: Preprocessing | None = None) -> PreparedDataset:
    """Order, filter and index: the stored form with leave-one-out roles (last test, second-last val)."""
    pre = pre or Preprocessing()
    warnings = list(raw.warnings)
    inter = raw.interactions
    n_raw = len(inter)
    sort_cols = ["user_id", "ts", "order"] if inter["ts"].notna().any() else ["user_id", "order"]
    inter = inter.sort_values(sort_cols, kind="stable")
    if pre.top_items is not None:
        counts = inter["item_id"].value_counts(sort=False)
        # ties broken by item id so the same file always gives the same catalogue
        ranked = counts.rename("n").reset_index().sort_values(["n", "item_id"], ascending=[False, True], kind="stable")
        keep = set(ranked["item_id"].head(pre.top_items))
        inter = inter.loc[inter["item_id"].isin(keep)]
        if len(counts) > len(keep):
            warnings.append(f"kept the {len(keep)} most-interacted of {len(counts)} items (top_items)")
    if pre.max_items_per_user is not None:
        inter = inter.groupby("user_id", sort=False).tail(pre.max_items_per_user)
    length = inter.groupby("user_id", sort=False)["item_id"].transform("size")
    dropped_users = inter.loc[length < pre.min_interactions, "user_id"].nunique()
    inter = inter.loc[length >= pre.min_interactions]
    if inter.empty:
        raise DataError(f"no user has at least {pre.min_interactions} interactions; nothing to train on "
                        "(lower --min-interactions or check the interactions file)")
    if dropped_users:
        warnings.append(f"{dropped_users} users with fewer than {pre.min_interactions} interactions were dropped")

    used = pd.unique(inter["item_id"])
    items = raw.items.set_index("item_id")
    unused = len(items) - len(used)
    if unused:
        warnings.append(f"{unused} items have no interactions after filtering and were left out of the catalogue")
    # keep the items file's order for the dense index, restricted to used items
    order = raw.items["item_id"][raw.items["item_id"].isin(set(used))].tolist()
    item_index = {item: i for i, item in enumerate(order)}
    items = items.loc[order]

    user_order = pd.unique(inter["user_id"])
    user_index = {u: i for i, u in enumerate(user_order)}
    user_idx = inter["user_id"].map(user_index).to_numpy(np.int64)
    order_sort = np.argsort(user_idx, kind="stable")
    inter = inter.iloc[order_sort]
    user_idx = user_idx[order_sort]
    pos = inter.groupby("user_id", sort=False).cumcount().to_numpy(np.int64)
    length = inter.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy(np.int64)
    role = np.where(pos == length - 1, "test", np.where(pos == length - 2, "val", "train"))

    item_frame = pd.DataFrame({
        "idx": np.arange(len(order), dtype=np.int64),
        "item_id": order,
        "title": items["title"].to_numpy(),
        "video_path": items["video_path"].to_numpy(),
        "cover_path": items["cover_path"].to_numpy(),
        "meta": [json.dumps(m, default=_json_default) for m in items["meta"]],
    })
    users = pd.DataFrame({"idx": np.arange(len(user_order), dtype=np.int64), "user_id": user_order})
    interactions = pd.DataFrame({
        "user_idx": user_idx,
        "pos": pos,
        "item_idx": inter["item_id"].map(item_index).to_numpy(np.int64),
        "ts": inter["ts"].to_numpy(dtype="float64", na_value=np.nan),
        "role": role,
    })
    interactions["ts"] = interactions["ts"].astype("Int64")
    repeats = int(inter.duplicated(["user_id", "item_id"]).sum())
    stats = dataset_stats(interactions, len(order), len(user_order))
    stats.update({"raw_interactions": int(n_raw), "repeat_interactions": repeats,
                  "videos": int(item_frame["video_path"].notna().sum()),
                  "covers": int(item_frame["cover_path"].notna().sum())})
    params = {"min_interactions": pre.min_interactions, "max_items_per_user": pre.max_items_per_user,
              "top_items": pre.top_items,
              "split": "leave_one_out"}
    return PreparedDataset(items=item_frame, users=users, interactions=interactions, stats=stats, params=params,
                           warnings=warnings)


def dataset_stats(interactions: pd.DataFrame, n_items: int, n_users: int) -> dict:
    lengths = interactions.groupby("user_idx").size().to_numpy()
    counts = np.bincount(interactions["item_idx"].to_numpy(), minlength=n_items)
    return {
        "users": int(n_users), "items": int(n_items), "interactions": int(len(interactions)),
        "density": float(len(interactions) / max(1, n_users * n_items)),
        "seq_len_min": int(lengths.min()), "seq_len_median": float(np.median(lengths)),
        "seq_len_mean": float(lengths.mean()), "seq_len_max": int(lengths.max()),
        "item_count_median": float(np.median(counts)), "items_seen_once": int((counts == 1).sum()),
    }


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return str(value)
