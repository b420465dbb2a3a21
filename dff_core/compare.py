"""Comparing finished runs: leaderboards over seeds, metric-by-layer curves, strategy bars, cold vs warm.

Input is the run table of ``storage.views.runs_frame`` (one row per run, ``"<split> <metric>"`` columns).
Runs that hit their epoch cap while still improving (``ending == "capped_improving"``, see
``dff_core.endings``) are counted per group (``capped``), marked in the ``training`` column and can be left out
(``filter_runs(hide_capped=True)``): their numbers are of under-trained models.
"""
from __future__ import annotations

import numpy as np
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
    cols = GROUP + ["seeds", "mean", "std", f"{metric} (mean ± std)", "training", "capped", "loss", "device", "runs"]
    done = runs.dropna(subset=[col]) if len(runs) else runs
    if done.empty:
        return pd.DataFrame(columns=cols)
    done = done.assign(_capped=is_capped(done).astype(int))
    for c, fill in (("loss", "full"), ("device", "cpu")):  # run tables from before these columns
        done[c] = done[c].fillna(fill) if c in done.columns else fill
    g = done.groupby(GROUP, dropna=False, sort=False)
    joined = lambda s: ", ".join(dict.fromkeys(str(v) for v in s))  # noqa: E731  (distinct values, in order)
    out = g.agg(seeds=("run_id", "size"), mean=(col, "mean"), std=(col, "std"), capped=("_capped", "sum"),
                loss=("loss", joined), device=("device", joined),
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
