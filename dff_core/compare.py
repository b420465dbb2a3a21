"""Comparing finished runs: leaderboards over seeds, metric-by-layer curves, strategy bars, cold vs warm.

Input is the run table of ``storage.views.runs_frame`` (one row per run, ``"<split> <metric>"`` columns).
"""
from __future__ import annotations

import pandas as pd

GROUP = ["dataset", "backbone", "features", "strategy", "layers"]


def filter_runs(runs: pd.DataFrame, datasets=None, backbones=None, strategies=None, studies=None) -> pd.DataFrame:
    """Keep rows whose column is in the given values (an empty or None filter keeps everything)."""
    out = runs
    for col, values in (("dataset", datasets), ("backbone", backbones), ("strategy", strategies),
                        ("study", studies)):
        if values:
            out = out[out[col].isin(list(values))]
    return out


def leaderboard(runs: pd.DataFrame, metric: str = "NDCG@10", split: str = "test") -> pd.DataFrame:
    """Mean ± std over seeds of ``split metric`` per (dataset, backbone, features, strategy, layers), best first.

    ``std`` is the sample standard deviation (0 for a single seed)."""
    col = f"{split} {metric}"
    cols = GROUP + ["seeds", "mean", "std", f"{metric} (mean ± std)", "loss", "device", "runs"]
    done = runs.dropna(subset=[col]) if len(runs) else runs
    if done.empty:
        return pd.DataFrame(columns=cols)
    done = done.copy()
    for c, fill in (("loss", "full"), ("device", "cpu")):  # run tables from before these columns
        done[c] = done[c].fillna(fill) if c in done.columns else fill
    g = done.groupby(GROUP, dropna=False, sort=False)
    joined = lambda s: ", ".join(dict.fromkeys(str(v) for v in s))  # noqa: E731  (distinct values, in order)
    out = g.agg(seeds=("run_id", "size"), mean=(col, "mean"), std=(col, "std"), loss=("loss", joined),
                device=("device", joined),
                runs=("run_id", lambda s: ", ".join(str(int(v)) for v in s))).reset_index()
    out["std"] = out["std"].fillna(0.0)
    out[f"{metric} (mean ± std)"] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(out["mean"], out["std"])]
    return out.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)[cols]


def layer_curve(runs: pd.DataFrame, metric: str = "NDCG@10", split: str = "test") -> pd.DataFrame:
    """Single-layer runs: mean and std of the metric per (backbone, features, strategy, layer), by layer."""
    col = f"{split} {metric}"
    cols = ["backbone", "features", "strategy", "layer", "mean", "std", "seeds"]
    single = runs[runs["layer"].notna()].dropna(subset=[col]) if len(runs) else runs
    if single.empty:
        return pd.DataFrame(columns=cols)
    out = single.groupby(["backbone", "features", "strategy", "layer"]).agg(
        mean=(col, "mean"), std=(col, "std"), seeds=(col, "size")).reset_index()
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
