"""Comparing finished runs: leaderboards over seeds, metric-by-layer curves, strategy bars, cold vs warm.

Input is the run table of ``storage.views.runs_frame`` (one row per run, ``"<split> <metric>"`` columns).
``versus_baseline`` tests every leaderboard row against a chosen one, paired by seed (the Study page's test),
and ``winner`` names the best row and whether it beats that baseline. Runs that hit their epoch cap while still
improving (``ending == "capped_improving"``, see
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
    out[f"{metric} (mean ± std)"] = [mean_std_text(m, s, n) for m, s, n in zip(out["mean"], out["std"], out["seeds"])]
    return out.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)[cols]


def mean_std_text(mean: float, std: float, seeds: int) -> str:
    """``0.1234 ± 0.0056``; one seed has no spread to show, so it says so instead of a misleading ``± 0.0000``."""
    return f"{mean:.4f} (1 seed)" if seeds < 2 else f"{mean:.4f} ± {std:.4f}"


def row_label(row) -> str:
    """A leaderboard row in words: ``dff · smollm2-titles · layers all · demo`` (``id · demo`` for the ID run)."""
    parts = [str(row["strategy"])]
    if row.get("features"):
        parts += [str(row["features"]), f"layers {row['layers']}"]
    return " · ".join(parts + [str(row["dataset"])])


def default_baseline(board: pd.DataFrame) -> int | None:
    """The row a comparison starts against: the ID-only baseline when the board has one (what every feature
    strategy must beat), else the last (weakest) row; None for an empty board."""
    if board.empty:
        return None
    ids = board.index[board["strategy"] == "id"]
    return int(ids[0]) if len(ids) else int(board.index[-1])


def versus_baseline(runs: pd.DataFrame, board: pd.DataFrame, baseline: int, metric: str = "NDCG@10",
                    split: str = "test") -> pd.DataFrame:
    """Every leaderboard row against row ``baseline``, paired by seed with the Study page's test
    (``dff_core.study.verdicts.compare``: paired t-test over the seeds both ran, at least 3, α = 0.05; rows with
    runs capped while improving are "under-trained", not decided).

    Columns: ``Δ vs baseline`` (mean paired difference, NaN without shared seeds), ``p``, ``paired seeds``,
    ``verdict`` (``better`` / ``worse`` / ``no clear difference`` / ``under-trained`` / ``too few seeds`` /
    ``baseline``) and ``reason`` in words. Index and order follow ``board``."""
    from dff_core.study.verdicts import (CONTRADICTED, MIN_SEEDS, SUPPORTED, UNDER_TRAINED, Comparison,
                                         compare)

    col = f"{split} {metric}"
    done = runs.dropna(subset=[col])
    marked = done.assign(_key=done[GROUP].astype(str).agg("|".join, axis=1), _capped=is_capped(done))

    def seeds_of(row) -> tuple[pd.Series, list]:
        """The row's value per seed (the Study page pairs by seed) and its runs capped while improving."""
        part = marked[marked["_key"] == "|".join(str(row[c]) for c in GROUP)]
        return part.groupby("seed")[col].mean().astype(float), part.loc[part["_capped"], "run_id"].tolist()

    base = board.loc[baseline]
    base_seeds, base_capped = seeds_of(base)
    rows = []
    for i, row in board.iterrows():
        if i == baseline:
            rows.append({"Δ vs baseline": 0.0, "p": float("nan"), "paired seeds": len(base_seeds),
                         "verdict": "baseline", "reason": "the row the others are tested against"})
            continue
        values, capped_runs = seeds_of(row)
        c = compare(Comparison(0, "", "", row_label(row), row_label(base), metric=metric), values, base_seeds,
                    capped_runs=capped_runs + base_capped)
        verdict = {SUPPORTED: "better", CONTRADICTED: "worse", UNDER_TRAINED: "under-trained"}.get(c.verdict)
        if verdict is None:
            verdict = "too few seeds" if c.n < MIN_SEEDS else "no clear difference"
        rows.append({"Δ vs baseline": c.diff, "p": c.p, "paired seeds": c.n, "verdict": verdict,
                     "reason": c.reason})
    return pd.DataFrame(rows, index=board.index)


def winner(board: pd.DataFrame, tests: pd.DataFrame) -> dict | None:
    """The answer to "which is better?": the best-mean row and whether it beats the baseline.

    ``{"row", "label", "mean", "verdict", "reason", "beats_baseline", "baseline_is_best"}`` for the top row other
    than the baseline (None when the board has fewer than two rows). ``beats_baseline`` is true only for a
    paired-test win; ``baseline_is_best``: the baseline itself has the best mean."""
    others = board.index[tests["verdict"] != "baseline"]
    if board.empty or len(others) == 0:
        return None
    top = others[0]  # the board is sorted best first
    t = tests.loc[top]
    return {"row": int(top), "label": row_label(board.loc[top]), "mean": float(board.loc[top, "mean"]),
            "verdict": t["verdict"], "reason": t["reason"], "beats_baseline": t["verdict"] == "better",
            "baseline_is_best": bool(tests.iloc[0]["verdict"] == "baseline")}


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
