"""Storage: one DuckDB file (datasets, items, interactions, feature sets and vectors, runs, metrics, jobs).

Every function takes a ``Database`` handle and opens a short transaction per call; see ``storage.db``
for why. It imports neither the science (``dff_core``) nor ``jobs``: the layers above call it.
"""
from storage.db import Database, DatabaseBusy, DatabaseDamaged, NotFound, default_db_path

__all__ = ["Database", "DatabaseBusy", "DatabaseDamaged", "NotFound", "default_db_path"]
