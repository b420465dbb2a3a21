"""A damaged database says so in one line (the file and what to do) on the CLI and the pages; ``check`` reads it
all and compares it with what was recorded; imports and finished jobs are checkpointed into the main file."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from data_helpers import ROOT, write_generic
from jobs.datasets import import_generic
from storage import Database
from storage.datasets import list_datasets, load_items

BLOCK = 262_144   # DuckDB's block size; the file starts with three 4 KiB headers
HEADERS = 3 * 4096


def _cli(db_path, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), DFF_WORKER="0")
    return subprocess.run([sys.executable, "-m", "dff_core", "--db", str(db_path), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A database with a dataset, a feature set and a finished run (rows written directly: no training)."""
    from jobs.workflows import import_features_npz

    root = tmp_path_factory.mktemp("good")
    db = Database(root / "good.duckdb")
    ds = import_generic(db, "small", *write_generic(root / "d", n_users=200, n_items=300, seq=8))
    ids = np.asarray(load_items(db, ds.id)["item_id"].astype(str).tolist(), dtype=str)
    np.savez(root / "f.npz", item_ids=ids, features=np.random.default_rng(0).normal(size=(len(ids), 3, 16)))
    import_features_npz(db, "feats", "small", root / "f.npz")
    with db.session() as conn:
        run_id = conn.execute(sa.text("INSERT INTO runs (dataset_id, strategy, config, status, epochs_run) "
                                      "VALUES (:d, 'id', '{}', 'done', 2) RETURNING id"), {"d": ds.id}).scalar()
        for epoch in (1, 2):
            conn.execute(sa.text("INSERT INTO metrics VALUES (:r, :e, 'train', 'loss', 1.0)"), {"r": run_id, "e": epoch})
    return db.path


def _copy(good: Path, folder: Path, name: str) -> Path:
    path = folder / f"{name}.duckdb"
    shutil.copy(good, path)
    return path


def _garble(path: Path, offset: int, n: int = 64) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\x55" * n)


def _header(path):
    _garble(path, 0, 200)


def _blocks(path):
    for offset in range(HEADERS + 2 * BLOCK + 100, path.stat().st_size, BLOCK):
        _garble(path, offset)


def _cut(path):
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 3)


def _wal(path):
    """A write-ahead log left by a process that died, garbled after its first entry."""
    code = ("import duckdb, os, sys; c = duckdb.connect(sys.argv[1]); c.execute('PRAGMA disable_checkpoint_on_shutdown');"
            "c.execute('CREATE TABLE t AS SELECT range i FROM range(100000)'); os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    _garble(Path(str(path) + ".wal"), 100)


DAMAGE = {"header": _header, "blocks": _blocks, "cut short": _cut, "wal": _wal}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_database_is_one_line_naming_the_file_and_what_to_do(good, tmp_path, kind):
    path = _copy(good, tmp_path, kind.replace(" ", "_"))
    DAMAGE[kind](path)
    refused = 0
    for command in (["datasets"], ["runs"], ["export-features", "feats", "--npz", str(tmp_path / "x.npz")]):
        out = _cli(path, *command)
        assert out.returncode in (0, 2) and "Traceback" not in out.stderr, (command, out.stderr)
        if out.returncode == 0:  # what a cut-short file still holds is read; what it lost is refused
            continue
        refused += 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in out.stderr
        if kind == "wal":
            assert lines[0].startswith(f"error: the database's write-ahead log {path}.wal is damaged")
            assert "Move it aside" in lines[0]
        else:
            assert lines[0].startswith(f"error: the database {path} is damaged")
            assert "Restore a copy" in lines[0]
    assert refused >= (1 if kind == "cut short" else 3)
    out = _cli(path, "check")
    assert out.returncode == 1 and out.stdout.splitlines()[0].startswith("problem: the database")
    assert "Traceback" not in out.stderr


def test_pages_show_the_damage_as_one_red_line(good, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    path = _copy(good, tmp_path, "page")
    _header(path)
    monkeypatch.setenv("DFF_DB", str(path))
    monkeypatch.setenv("DFF_WORKER", "0")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [e.value.replace("\\", "") for e in at.error]   # escaped as plain text (pages.common.plain)
    assert len(shown) == 1 and shown[0].startswith(f"the database {path} is damaged") and "Restore a copy" in shown[0]


def test_check_passes_a_whole_database_and_names_what_does_not_add_up(good, tmp_path):
    out = _cli(good, "check", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["ok"] and report["counts"] == {"datasets": 1, "feature_sets": 1, "runs": 1}
    path = _copy(good, tmp_path, "short")
    db = Database(path)
    with db.session() as conn:
        conn.execute(sa.text("DELETE FROM interactions WHERE user_idx = 0"))
        table = conn.execute(sa.text("SELECT location FROM feature_sets")).scalar()
        conn.execute(sa.text(f"DELETE FROM {table} WHERE item < 5"))
        conn.execute(sa.text("DELETE FROM metrics WHERE epoch = 2"))
    out = _cli(path, "check")
    assert out.returncode == 1
    problems = [line for line in out.stdout.splitlines() if line.startswith("problem: ")]
    assert problems == ["problem: dataset 'small': 1,592 interactions stored, 1,600 recorded at import",
                        "problem: feature set 'feats' of 'small' (complete): vectors for 295 items stored, 300 expected",
                        "problem: run 1: 1 epochs of metrics stored, 2 recorded"]


def test_an_import_is_in_the_main_file_not_only_in_the_log(tmp_path):
    """While the process keeps the file open (a dashboard page, a worker), a committed import must not live only in
    the write-ahead log: a log lost or cut short by a crash would silently drop it."""
    db = Database(tmp_path / "live.duckdb")
    with db.held_open(seconds=60):
        import_generic(db, "kept", *write_generic(tmp_path / "d"))
        shutil.copy(db.path, tmp_path / "main_file_only.duckdb")   # the main file as a crash would leave it
    assert [d.name for d in list_datasets(Database(tmp_path / "main_file_only.duckdb"))] == ["kept"]
