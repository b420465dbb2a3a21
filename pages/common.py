"""Helpers shared by the dashboard pages: the database handle and table views of storage."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from storage import Database, default_db_path
from storage.datasets import list_datasets


def database() -> Database:
    """One handle per database file and process; it holds no connection between calls (see storage.db)."""
    return _database(str(default_db_path()))


@st.cache_resource
def _database(path: str) -> Database:
    return Database(path)


def dataset_table(db: Database) -> pd.DataFrame:
    rows = []
    for d in list_datasets(db):
        s = d.stats
        rows.append({"name": d.name, "source": d.source, "users": s["users"], "items": s["items"],
                     "interactions": s["interactions"], "median seq. length": s["seq_len_median"],
                     "max seq. length": s["seq_len_max"], "items seen once": s["items_seen_once"],
                     "videos": s.get("videos", 0), "covers": s.get("covers", 0),
                     "warnings": len(d.warnings), "imported": d.created_at})
    return pd.DataFrame(rows)
