"""Re-judging a study from its runs CSV reads each run's own epoch cap and patience (``fill_endings``), never an
assumed patience of 5."""
from __future__ import annotations

import pandas as pd

from dff_core.endings import CAPPED_IMPROVING, EARLY_STOPPED
from dff_core.study.verdicts import fill_endings, study_from_runs_csv


def _runs() -> pd.DataFrame:
    # both ran to their cap of 10 epochs, best at epoch 7: three evaluations without gain since
    return pd.DataFrame({"run_id": [1, 2], "strategy": ["id", "id"], "layers": ["—", "—"], "seed": [1, 2],
                         "epochs": [10, 10], "best_epoch": [7, 7], "epoch_cap": [10, 10], "patience": [3, 0]})


def test_each_run_is_judged_with_its_own_patience():
    out = fill_endings(_runs(), epochs=10, patience=5)
    # patience 3: three evaluations without gain stopped it early; patience 0: it ran to the cap
    assert out["ending"].tolist() == [EARLY_STOPPED, fill_endings(_runs().iloc[[1]], 10, 0)["ending"].iloc[0]]
    assert out["ending"].iloc[0] != fill_endings(_runs().drop(columns="patience"), 10, 5)["ending"].iloc[0]


def test_a_runs_csv_without_the_columns_falls_back_to_the_study_settings(tmp_path):
    runs = _runs().drop(columns=["patience", "epoch_cap"])
    assert fill_endings(runs, epochs=10, patience=5)["ending"].tolist() == [CAPPED_IMPROVING] * 2
    assert fill_endings(runs, epochs=10, patience=3)["ending"].tolist() == [EARLY_STOPPED] * 2


def test_study_from_runs_csv_reads_patience_from_the_file(tmp_path):
    path = tmp_path / "runs.csv"
    _runs().to_csv(path, index=False)
    data = study_from_runs_csv(path, num_layers=4, patience=5)
    assert data.runs.set_index("run_id").loc[1, "ending"] == EARLY_STOPPED
