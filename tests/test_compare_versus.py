"""Compare's answer to "which is better?": the paired test against a chosen baseline, the winner, the one-seed
text, the empty state of Hide capped — in dff_core.compare, on the page (AppTest) and in ``versus`` (CLI)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dff_core import compare
from storage.views import RUN_COLUMNS

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def run_rows(strategy: str, values: list[float], features: str = "", ending: str = "early_stopped",
             first_id: int = 1) -> list[dict]:
    rows = []
    for seed, v in enumerate(values, 1):
        row = {c: None for c in RUN_COLUMNS}
        row.update({"run_id": first_id + seed, "dataset": "demo", "study": "s", "strategy": strategy,
                    "backbone": "smollm2" if features else "ID only", "features": features,
                    "layers": "all" if features else "—", "n_layers": 0, "seed": seed, "status": "done",
                    "ending": ending, "epochs": 20, "test NDCG@10": v, "val NDCG@10": v, "cold users": 10,
                    "warm users": 90, "cold NDCG@10": v / 2, "warm NDCG@10": v, "cold threshold": 5,
                    "popularity test NDCG@10": 0.05, "loss": "full", "device": "cpu"})
        rows.append(row)
    return rows


def frame() -> pd.DataFrame:
    """id (4 seeds), gate clearly better on every seed, add within noise, concat with one seed, dff capped."""
    rows = (run_rows("id", [0.100, 0.104, 0.098, 0.102])
            + run_rows("gate", [0.130, 0.136, 0.127, 0.133], "f", first_id=10)
            + run_rows("add", [0.106, 0.100, 0.103, 0.099], "f", first_id=20)
            + run_rows("concat", [0.125], "f", first_id=30)
            + run_rows("dff", [0.140, 0.150, 0.145], "f", ending="capped_improving", first_id=40))
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def test_versus_baseline_verdicts_and_winner():
    runs = frame()
    board = compare.leaderboard(runs)
    assert board["strategy"].tolist() == ["dff", "gate", "concat", "add", "id"]
    assert board.loc[2, "NDCG@10 (mean ± std)"] == "0.1250 (1 seed)"          # not "± 0.0000"
    base = compare.default_baseline(board)
    assert board.loc[base, "strategy"] == "id"
    tests = compare.versus_baseline(runs, board, base)
    assert tests["verdict"].tolist() == ["under-trained", "better", "too few seeds", "no clear difference",
                                         "baseline"]
    assert tests.loc[1, "Δ vs baseline"] == pytest.approx(0.0305) and tests.loc[1, "p"] < 0.001
    assert tests.loc[1, "paired seeds"] == 4 and tests.loc[3, "p"] > 0.05
    best = compare.winner(board, tests)
    # dff has the best mean but is under-trained: the winner names it and says it does not beat the baseline
    assert best["label"] == "dff · f · layers all · demo" and not best["beats_baseline"]
    runs = compare.filter_runs(runs, hide_capped=True)
    board = compare.leaderboard(runs)
    best = compare.winner(board, compare.versus_baseline(runs, board, compare.default_baseline(board)))
    assert best["label"] == "gate · f · layers all · demo" and best["beats_baseline"]
    assert best["reason"].startswith("gate · f · layers all · demo beats id · demo by +0.0305 (p = ")


@pytest.fixture
def page(tmp_path, monkeypatch):
    from storage import views
    monkeypatch.setenv("DFF_WORKER", "0")
    monkeypatch.setenv("DFF_DB", str(tmp_path / "c.duckdb"))
    monkeypatch.setattr(views, "runs_frame", lambda db, *a, **k: frame())
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_compare_page_names_the_winner_against_a_chosen_baseline(page):
    at = page
    assert at.selectbox(key="cmp_baseline").value == 4                      # the id row
    board = at.dataframe[0].value
    assert board["vs baseline"].tolist() == ["under-trained", "better", "too few seeds", "no clear difference",
                                             "baseline"]
    assert "Best mean: dff · f · layers all · demo (0.1450), but it does not beat id · demo: under-trained" in \
        at.warning[-1].value.replace("\\", "")
    at.checkbox(key="cmp_hide_capped").check().run()
    board = at.dataframe[0].value
    assert board["vs baseline"].tolist()[0] == "★ better" and board["strategy"].tolist()[0] == "gate"
    assert "Winner: gate · f · layers all · demo" in at.success[0].value.replace("\\", "")
    at.selectbox(key="cmp_baseline").set_value(0).run()                    # gate as the baseline
    board = at.dataframe[0].value
    assert board["vs baseline"].tolist() == ["baseline", "too few seeds", "worse", "worse"]
    assert "The baseline gate" in at.info[0].value.replace("\\", "")
    assert "13 finished runs match" in " ".join(c.value for c in at.caption)  # the 3 capped dff runs hidden


def test_compare_page_one_run_and_hidden_capped_empty_state(tmp_path, monkeypatch):
    from storage import views
    monkeypatch.setenv("DFF_WORKER", "0")
    monkeypatch.setenv("DFF_DB", str(tmp_path / "c.duckdb"))
    one = pd.DataFrame(run_rows("dff", [0.14], "f", ending="capped_improving"), columns=RUN_COLUMNS)
    monkeypatch.setattr(views, "runs_frame", lambda db, *a, **k: one)
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("pages/compare.py").run()
    assert "1 finished run matches: #2" in [c.value for c in at.caption]
    assert at.dataframe[0].value["NDCG@10 (mean ± std)"].tolist() == ["0.1400 (1 seed)"]
    at.checkbox(key="cmp_hide_capped").check().run()
    assert "All 1 runs that match the filters hit their epoch cap" in at.warning[0].value
    assert "untick it" in at.warning[0].value


def test_cli_versus_prints_headers_test_and_winner(tmp_path, monkeypatch, capsys):
    from cli import main
    from storage import views
    monkeypatch.setattr(views, "runs_frame", lambda db, *a, **k: frame())
    db = str(tmp_path / "v.duckdb")
    assert main(["--db", db, "versus", "--hide-capped"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["row", "strategy"] and "test NDCG@10 (mean ± std)" in lines[0]
    assert lines[1].split()[:2] == ["1", "gate"] and "★ better" in lines[1]
    assert "0.1250 (1 seed)" in lines[2] and "too few seeds" in lines[2]
    assert lines[-1].startswith("winner: gate · f · layers all · demo beats id")
    assert main(["--db", db, "versus", "--baseline", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # the capped dff row as the baseline: every comparison with it is under-trained, never decided
    assert out["baseline"] == 1 and [r["verdict"] for r in out["rows"]][:2] == ["baseline", "under-trained"]
    assert out["winner"]["baseline_is_best"] and out["metric"] == "test NDCG@10"
    assert main(["--db", db, "versus", "--baseline", "9"]) == 2
    assert "--baseline must be a row number from 1 to 5" in capsys.readouterr().err
