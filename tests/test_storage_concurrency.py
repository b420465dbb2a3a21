"""Two writer processes and a reader on the same DuckDB file at once: every row arrives, no lock error."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from data_helpers import write_generic
from jobs.datasets import import_generic
from storage.features import create_feature_set, read_features
from storage.runs import create_run, run_metrics

WORKER = Path(__file__).with_name("concurrency_worker.py")


def test_two_writers_and_a_reader(db, tmp_path):
    inter, items = write_generic(tmp_path / "d", n_users=40, n_items=40, seq=6)
    ds = import_generic(db, "d", inter, items)
    create_feature_set(db, "d", "shared", "test", num_layers=3, dim=16)
    runs = [create_run(db, ds.id, "id", {}).id for _ in range(2)]
    n = 60
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(db.path), "writer", str(r), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in runs]
    procs.append(subprocess.Popen([sys.executable, str(WORKER), str(db.path), "reader", "0", str(n)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    for r in reports:
        assert r["errors"] == [], r
    m = run_metrics(db, runs)
    assert len(m) == 2 * n
    for r in runs:
        assert sorted(m.loc[m.run_id == r, "epoch"]) == list(range(n))  # every row, once
    # feature writes from both writers arrived too: items r*1000+k % 40 for k < 6
    fs_vectors, present = read_features(db, create_feature_set(db, "d", "shared", "test", 3, 16, exist_ok=True))
    expected = {(r * 1000 + k) % 40 for r in runs for k in range(n // 10)}
    assert set(np.flatnonzero(present)) == expected
