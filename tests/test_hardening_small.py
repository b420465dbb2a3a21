"""Small things that used to fail badly: a negative ``jobs --limit``, an items file whose rows were lost, an
extraction resumed with another batch size."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from data_helpers import ROOT, write_generic
from dff_core.data.importers import DataError, read_generic
from storage.features import create_feature_set
from storage.queue import enqueue, list_jobs


@pytest.mark.parametrize("limit", [-1, 0])
def test_jobs_limit_below_one_is_one_line(db, limit):
    enqueue(db, "demo", {})
    with pytest.raises(ValueError, match=f"--limit must be a whole number of at least 1, not {limit}"):
        list_jobs(db, limit=limit)
    assert len(list_jobs(db, limit=1)) == 1
    out = subprocess.run([sys.executable, "-m", "dff_core", "--db", str(db.path), "jobs", "--limit", str(limit)],
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and out.stderr.strip() == f"error: --limit must be a whole number of at least 1, not {limit}"


def test_an_items_file_of_one_line_says_its_rows_are_missing(tmp_path):
    inter, items = write_generic(tmp_path / "d")
    rows = items.read_text().splitlines()
    items.write_text(rows[0] + "," + ",".join(f"c{i}" for i in range(50_000)) + "\n")
    with pytest.raises(DataError) as err:
        read_generic(inter, items)
    assert str(err.value).startswith(f"items.csv: no item rows after the header line ({items.stat().st_size:,} bytes "
                                     "in one line)")


def test_an_extraction_resumes_only_with_its_own_batch_size(db, tmp_path):
    from jobs.datasets import import_generic
    from jobs.workflows import _same_batch

    import_generic(db, "d", *write_generic(tmp_path / "d"))
    fs = create_feature_set(db, "d", "f", "smollm2", 2, 4, params={"batch_size": 8})
    _same_batch(fs, 8)
    with pytest.raises(ValueError, match="was started with --batch-size 8; resume it with --batch-size 8"):
        _same_batch(fs, 16)


def test_db_works_before_or_after_the_command_name(db, tmp_path):
    from cli.core import _load_extensions, build_parser

    _load_extensions()
    parser = build_parser()
    for argv in (["--db", "x.duckdb", "datasets"], ["datasets", "--db", "x.duckdb"], ["runs", "--db", "x.duckdb"],
                 ["check", "--db", "x.duckdb"]):
        assert parser.parse_args(argv).db == "x.duckdb"
    assert parser.parse_args(["datasets"]).db is None


def test_export_runs_without_mlflow_is_one_line_exit_2(db):
    code = ("import sys; sys.modules['mlflow'] = None\n"   # the import blocked, as where MLflow is not installed
            "from cli import main; sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "--db", str(db.path), "export-runs", "--mlflow",
                          str(db.path.parent / "mlruns")], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == "error: exporting to MLflow needs it: pip install -r requirements-mlflow.txt"
