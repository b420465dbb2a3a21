"""``check``: is this database whole? Every stored row read back against what was recorded when it was written.

Why: DuckDB verifies a block's checksum only when the block is read, so a damaged file can look fine until a page
or a job touches the damaged part; and an import whose log entry was lost leaves no trace of itself. The check reads
everything once (the vectors too) and compares: each dataset's user, item and interaction counts with its stored
stats, each finished feature set's vectors with its item count and layers, each finished run's epochs with its
metric rows. It only reads; damage is reported as one line (``storage.db.DatabaseDamaged``), not raised.
"""
from __future__ import annotations

import json
from pathlib import Path
from dataclasses import dataclass, field

import sqlalchemy as sa

from storage.db import Database, DatabaseDamaged


@dataclass
class CheckReport:
    """What ``check`` found: ``counts`` of what it read (datasets, feature sets, runs), and ``problems``, one
    line each (empty when the database is whole)."""
    counts: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_database(db_path) -> CheckReport:
    """Read the whole database at ``db_path`` and compare it with what was recorded (module docstring)."""
    report = CheckReport()
    if not Path(db_path).is_file():
        report.problems.append(f"there is no database file at {db_path}")
        return report
    try:
        db = Database(db_path)
        with db.session() as conn:
            _datasets(conn, report)
            _feature_sets(conn, report)
            _runs(conn, report)
    except DatabaseDamaged as exc:
        report.problems.append(str(exc))
    return report


def _datasets(conn, report: CheckReport) -> None:
    rows = conn.execute(sa.text("SELECT id, name, stats FROM datasets ORDER BY id")).fetchall()
    report.counts["datasets"] = len(rows)
    for ds_id, name, stats in rows:
        stats = json.loads(stats or "{}")
        for table, key in (("users", "users"), ("items", "items"), ("interactions", "interactions")):
            stored = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE dataset_id = :d"), {"d": ds_id}).scalar()
            if key in stats and stored != stats[key]:
                report.problems.append(f"dataset {name!r}: {stored:,} {table} stored, {stats[key]:,} recorded at import")
        conn.execute(sa.text("SELECT sum(length(title)), sum(length(item_id)) FROM items WHERE dataset_id = :d"),
                     {"d": ds_id}).fetchall()  # every block of the rows is read (checksums verified)


def _feature_sets(conn, report: CheckReport) -> None:
    rows = conn.execute(sa.text(
        "SELECT f.id, f.name, f.status, f.storage, f.location, f.num_layers, f.stats, d.name AS dataset, "
        "(SELECT count(*) FROM items i WHERE i.dataset_id = f.dataset_id) AS items "
        "FROM feature_sets f JOIN datasets d ON d.id = f.dataset_id ORDER BY f.id")).fetchall()
    report.counts["feature_sets"] = len(rows)
    for r in rows:
        if r.storage != "duckdb" or r.status not in ("complete", "partial"):
            continue  # Parquet shards are files of their own; a set being written is not finished yet
        label = f"feature set {r.name!r} of {r.dataset!r}"
        got = conn.execute(sa.text(f"SELECT count(DISTINCT item), count(*), sum(len(vec)) FROM {r.location}")).first()
        stats = json.loads(r.stats or "{}")
        expected = r.items if r.status == "complete" else stats.get("items")
        if expected is not None and got[0] != expected:
            report.problems.append(f"{label} ({r.status}): vectors for {got[0]:,} items stored, {expected:,} expected")
        if got[0] and got[1] != got[0] * r.num_layers:
            report.problems.append(f"{label}: {got[1]:,} vectors stored, {got[0] * r.num_layers:,} expected "
                                   f"({r.num_layers} layers per item)")


def _runs(conn, report: CheckReport) -> None:
    rows = conn.execute(sa.text(
        "SELECT r.id, r.epochs_run, (SELECT count(DISTINCT epoch) FROM metrics m WHERE m.run_id = r.id "
        "AND m.split = 'train' AND m.epoch > 0) AS epochs FROM runs r WHERE r.status = 'done' ORDER BY r.id")).fetchall()
    report.counts["runs"] = len(rows)
    for run_id, epochs_run, epochs in rows:
        if epochs_run is not None and epochs != epochs_run:
            report.problems.append(f"run {run_id}: {epochs} epochs of metrics stored, {epochs_run} recorded")
