"""Comparing finished runs: leaderboards over seeds, metric-by-layer curves, strategy bars, cold vs warm.

Input is the run table of ``storage.views.runs_frame`` (one row per run, ``"<split> <metric>"`` columns).
Runs that hit their epoch cap while still improving (``ending == "capped_improving"``, see
``dff_core.endings``) are counted per group (``capped``), marked in the ``training`` column and can be left out
(``filter_runs(hide_capped=True)``): their numbers are of under-trained models.
"""
from __future__ import annotations

import pandas as pd

GROUP = ["dataset", "backbone", "features", "strategy", "layers"]
CAPPED = "capped_improving"


def is_capped(runs: pd.DataFrame) -> pd.Series:
    """True for runs that hit the epoch cap while still improving."""
    if "ending" not in runs.columns:
        return pd.Series(False, index=runs.index)
    return runs["ending"].fillna("").astype(str).eq(CAPPED)


def training_label(capped: int, runs: int) -> str:
    """How a group's runs ended, in words: the leaderboard's badge."""
    if not capped:
        return "converged"
    return f"⚠ capped while improving ({capped} of {runs})"


def filter_runs(runs: pd.DataFrame, datasets=None, backbones=None, strategies=None, studies=None,
                hide_capped: bool = False) -> pd.DataFrame:
    """Keep rows whose column is in the given values (an empty or None filter keeps everything); with
    ``hide_capped``, leave out runs that hit the epoch cap while still improving."""
    out = runs
    if hide_capped and len(out):
        out = out[~is_capped(out)]
    for col, values in (("dataset", datasets), ("backbone", backbones), ("strategy", strategies),
                        ("study", studies)):
        if values:
            out = out[out[col].isin(list(values))]
    return out


def leaderboard(runs: pd.DataFrame, metric: str = "NDCG@10", split: str = "test") -> pd.DataFrame:
    """Mean ± std over seeds of ``split metric`` per (dataset, backbone, features, strategy, layers), best first.

    ``std`` is the sample standard deviation (0 for a single seed)."""
    col = f"{split} {metric}"
    cols = GROUP + ["seeds", "mean", "std", f"{metric} (mean ± std)", "training", "capped", "runs"]
    done = runs.dropna(subset=[col]) if len(runs) else runs
    if done.empty:
        return pd.DataFrame(columns=cols)
    done = done.assign(_capped=is_capped(done).astype(int))
    g = done.groupby(GROUP, dropna=False, sort=False)
    out = g.agg(seeds=("run_id", "size"), mean=(col, "mean"), std=(col, "std"), capped=("_capped", "sum"),
                runs=("run_id", lambda s: ", ".join(str(int(v)) for v in s))).reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["capped"] = out["capped"].astype(int)
    out["training"] = [training_label(c, n) for c, n in zip(out["capped"], out["seeds"])]
    out[f"{metric} (mean ± std)"] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(out["mean"], out["std"])]
    return out.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)[cols]


def layer_curve(runs: pd.DataFrame, metric: str = "NDCG@10", split: str = "test") -> pd.DataFrame:
    """Single-layer runs: mean and std of the metric per (backbone, features, strategy, layer), by layer."""
    col = f"{split} {metric}"
    cols = ["backbone", "features", "strategy", "layer", "mean", "std", "seeds", "capped"]
    single = runs[runs["layer"].notna()].dropna(subset=[col]) if len(runs) else runs
    if single.empty:
        return pd.DataFrame(columns=cols)
    single = single.assign(_capped=is_capped(single).astype(int))
    out = single.groupby(["backbone", "features", "strategy", "layer"]).agg(
        mean=(col, "mean"), std=(col, "std"), seeds=(col, "size"), capped=("_capped", "sum")).reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["layer"] = out["layer"].astype(int)
    return out.sort_values(["backbone", "strategy", "layer"]).reset_index(drop=True)[cols]


def strategy_bars(runs: pd.DataFrame, metric: str = "NDCG@10", split: str = "test") -> pd.DataFrame:
    """Per (dataset, backbone, strategy): the best layer choice's mean ± std, so bars compare like with like."""
    board = leaderboard(runs, metric, split)
    if board.empty:
        return board
    best = board.groupby(["dataset", "backbone", "strategy"], sort=False).head(1)
    return best.reset_index(drop=True)


def bucket_frame(runs: pd.DataFrame, metric: str = "NDCG@10") -> pd.DataFrame:
    """Cold vs warm test targets: mean ± std over runs per (backbone, strategy, bucket)."""
    cols = ["backbone", "strategy", "bucket", "mean", "std", "users"]
    parts = []
    for bucket in ("cold", "warm"):
        col = f"{bucket} {metric}"
        part = runs.dropna(subset=[col]) if len(runs) else runs
        if part.empty:
            continue
        g = part.groupby(["backbone", "strategy"]).agg(mean=(col, "mean"), std=(col, "std"),
                                                        users=(f"{bucket} users", "max")).reset_index()
        g["bucket"] = bucket
        parts.append(g)
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    out["std"] = out["std"].fillna(0.0)
    return out[cols]
