"""``bench/full_study.py`` end to end on a small demo with a tiny random SmolLM2-shaped checkpoint, on the CPU:
every step runs through the real CLI, writes the report folder, and a second invocation skips every step.

The features and captions are random (plumbing, not science); 1 seed and 1 epoch keep it short."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["dataset", "features", "precision", "captions", "study", "caption-study", "layer-picker", "report"]
# 6 hidden states (embeddings + 5 layers), 2 layer points -> gate@0 and gate@5; the middle range is 1-3
ROLES = {"id", "replace", "init", "gate@0", "gate@5", "dff all", "dff 1-3"}
REPORT_FILES = ["report.html", "verdicts.csv", "runs.csv", "weights.csv"]


def _rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _run(tmp_path: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "bench" / "full_study.py"), "--db", str(tmp_path / "study.duckdb"),
           "--out", str(out), "--demo", "--demo-size", "20,60", "--tiny", "--device", "cpu", "--seeds", "1",
           "--epochs", "1", "--patience", "1", "--layer-points", "2", "--caption-users", "10",
           "--precision-items", "6", "--workers", "2", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_full_study_on_the_demo_writes_the_report_folder_and_resumes(tmp_path):
    out = tmp_path / "results" / "demo-full"
    proc = _run(tmp_path, out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    step_lines = [l for l in proc.stdout.splitlines() if l.startswith("[")]
    assert [l.split()[1] for l in step_lines] == STEPS  # one line per step, with its wall time
    assert all(l.split()[2] == "done" for l in step_lines), step_lines

    for folder in (out, out / "captions-sample"):
        for name in REPORT_FILES:
            assert (folder / name).is_file(), f"{folder / name} missing"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<html" in html.lower() and 'src="http' not in html  # self-contained
    assert "bench/full_study.py" in html and "Layer picker" in html  # the compute note

    runs = _rows(out / "runs.csv")
    assert {(r["role"], r["seed"]) for r in runs} == {(role, "1") for role in ROLES}
    assert all(r["test NDCG@10"] for r in runs)
    sample_runs = _rows(out / "captions-sample" / "runs.csv")
    assert {r["role"] for r in sample_runs} == ROLES | {"caption"}  # finding 1 on the CPU: on the subsample
    verdicts = _rows(out / "verdicts.csv")
    assert verdicts and {"1", "2", "3"} <= {str(r.get("finding", "")).strip() for r in verdicts}
    assert {r["role"] for r in _rows(out / "weights.csv")} == {"dff all", "dff 1-3"}

    compute = _rows(out / "compute.csv")
    assert [r["step"] for r in compute] == STEPS
    assert all(r["status"] == "done" and float(r["wall_s"]) > 0 for r in compute), compute
    assert all(r["device"] == "cpu" and r["machine"] for r in compute)
    assert "total" in (out / "compute.txt").read_text(encoding="utf-8")

    picker = _rows(out / "layer-picker.csv")
    assert [int(r["layer"]) for r in picker] == list(range(6))
    assert {int(r["layer"]) for r in picker if r["in_study"] == "True"} == {0, 5}
    assert "Spearman" in (out / "layer-picker.txt").read_text(encoding="utf-8")
    precision = _rows(out / "precision.csv")
    assert len(precision) == 6 and min(float(r["mean_cosine"]) for r in precision) >= 0.99

    again = _run(tmp_path, out)  # a rerun finds every output and skips every step
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    lines = [l for l in again.stdout.splitlines() if l.startswith("[")]
    assert len(lines) == len(STEPS) and all("done (earlier)" in l for l in lines), lines
    assert "$ python" not in again.stdout  # nothing was run
    assert [r["status"] for r in _rows(out / "compute.csv")] == ["done"] * len(STEPS)
