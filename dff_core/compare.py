"""Comparing finished runs: leaderboards over seeds, metric-by-layer curves, strategy bars, cold vs warm.

Input is the run table of ``storage.views.runs_frame`` (one row per run, ``"<split> <metric>"`` columns).
"""
from __future__ import annotations

import numpy as np
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
    cols = GROUP + ["seeds", "mean", "std", f"{metric} (mean ± std)", "runs"]
    done = runs.dropna(subset=[col]) if len(runs) else runs
    if done.empty:
        return pd.DataFrame(columns=cols)
    g = done.groupby(GROUP, dropna=False, sort=False)
    out = g.agg(seeds=("run_id", "size"), mean=(col, "mean"), std=(col, "std"),
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


SPREAD_COLUMNS = ["layers", "top layer", "max weight", "max / uniform", "entropy / max", "effective layers", "reading"]


def weight_spread(weights: pd.DataFrame, by: str | list[str] = "run_id") -> pd.DataFrame:
    """Did DFF choose layers or average them? One row per ``by`` group of a ``layer, weight`` frame.

    ``max / uniform`` = largest weight × number of layers (1 = exactly uniform, L = all weight on one layer);
    ``entropy / max`` = H(a) / log L (1 = uniform, 0 = one layer); ``effective layers`` = exp(H(a)), the number of
    equally weighted layers with the same entropy. ``reading`` says it in words: "averaged" below 1.5 × uniform,
    "chose layer N" when one layer holds at least half the weight, else "leans to layer N".
    """
    keys = [by] if isinstance(by, str) else list(by)
    if weights.empty:
        return pd.DataFrame(columns=keys + SPREAD_COLUMNS)
    rows = []
    for key, g in weights.groupby(keys, sort=False):
        w = g["weight"].astype(float).to_numpy()
        n = len(w)
        total = w.sum()
        a = w / total if total > 0 else w
        top = int(a.argmax())
        nz = a[a > 0]
        entropy = float(-(nz * np.log(nz)).sum())
        ratio = float(a[top] * n)
        layer = int(g["layer"].iloc[top])
        reading = ("averaged" if ratio < 1.5 else f"chose layer {layer}" if a[top] >= 0.5 else f"leans to layer {layer}")
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "layers": n, "top layer": layer,
                     "max weight": float(a[top]), "max / uniform": ratio,
                     "entropy / max": entropy / np.log(n) if n > 1 else 0.0, "effective layers": float(np.exp(entropy)),
                     "reading": reading})
    return pd.DataFrame(rows, columns=keys + SPREAD_COLUMNS)
