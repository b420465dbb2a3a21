"""Verdicts on the paper's three findings, computed from a study's stored runs.

Each finding has parts; each part compares two roles (see ``plan``) on the test metric, paired by seed:
mean ± std over seeds, and a two-sided paired t-test (``scipy.stats.ttest_rel``) on the per-seed values.

Why a t-test: with 2-5 seeds a sign test or an exact sign-flip permutation test cannot reach p < 0.05 at all
(the smallest two-sided p with n = 3 is 2/2³ = 0.25, with n = 5 it is 0.0625), so they could never support
or contradict anything; the paired t-test can, at the price of assuming roughly normal seed-to-seed
differences. The exact permutation p is reported next to it so a reader sees how much rests on that
assumption. Fewer than ``MIN_SEEDS`` paired seeds is always inconclusive.

"Best" layers are picked on the *validation* metric (mean over seeds) and then compared on *test*, so the
selection does not inflate the comparison it is judged by.

A part is ``supported`` when p < ``ALPHA`` and the difference goes the claimed way, ``contradicted`` when
p < ``ALPHA`` and it goes the other way, else ``inconclusive`` — unless any run of its two roles hit the epoch
cap while still improving (``dff_core.endings.CAPPED_IMPROVING``): then it is ``under-trained``, not decided,
whatever the t-test says. Why: content features speed up early learning, so a cap turns a head start into an
apparent win (or hides a loss); only runs trained to early stopping can decide. A finding is contradicted when
any primary part is, else under-trained when any primary part is, supported when every primary part is, else
inconclusive.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

ALPHA = 0.05
MIN_SEEDS = 3
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
UNDER_TRAINED = "under-trained"
CAPPED_IMPROVING = "capped_improving"   # dff_core.endings.CAPPED_IMPROVING (kept import-free of torch)


# ------------------------------------------------------------------------------------------- loading

@dataclass
class StudyData:
    """A study's stored runs (one row per finished run, with its role) and what they were run on."""
    study: str
    runs: pd.DataFrame
    num_layers: int | None
    dataset: str = ""
    features: str = ""
    captions: str | None = None
    weights: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["run_id", "role", "seed", "layer",
                                                                                "weight"]))
    progress: dict = field(default_factory=dict)
    weights_summary: pd.DataFrame | None = None   # role, layer, mean, std, seeds: when per-run weights are gone

    @property
    def last(self) -> int | None:
        return None if self.num_layers is None else self.num_layers - 1


def role_of(strategy: str, layers: str, layer, last: int | None) -> str:
    """The plan's role name for a stored run (``gate@30``, ``dff all``, ``replace`` ...)."""
    if strategy == "id":
        return "id"
    if strategy == "caption":
        return "caption"
    if strategy in ("replace", "init"):
        return strategy if last is not None and layers == str(last) else f"{strategy} {layers}"
    if strategy == "gate" and layer is not None and not (isinstance(layer, float) and math.isnan(layer)):
        return f"gate@{int(layer)}"
    return f"{strategy} {layers}"


def assign_roles(runs: pd.DataFrame, num_layers: int | None) -> pd.DataFrame:
    last = None if num_layers is None else num_layers - 1
    out = runs.copy()
    out["role"] = [role_of(s, str(l), ly, last) for s, l, ly in zip(out["strategy"], out["layers"], out["layer"])]
    return out


def study_from_runs_csv(path, num_layers: int, *, study: str | None = None, epochs: int | None = None,
                        patience: int = 5, eval_every: int = 1, captions: str | None = None,
                        weights_csv=None) -> StudyData:
    """A study rebuilt from its exported runs CSV (``study --report ... --runs-csv``), so a published report
    can be re-judged without its database: verdicts, tables and plots come out as from storage; DFF layer
    weights are not in it (``weights_csv``: the report's layer-weight table, role, layer, mean, std, seeds).
    Runs without an ``ending`` get one from epochs run and best epoch, judged with the run's own
    ``epoch_cap``/``patience``/``eval_every`` columns where the CSV has them, else with ``epochs`` (the study's
    cap; default: the most epochs any run ran), ``patience`` and ``eval_every``."""
    runs = pd.read_csv(path)
    need = {"run_id", "strategy", "layers", "seed", "epochs", "best_epoch"}
    missing = sorted(need - set(runs.columns))
    if missing:
        raise ValueError(f"{path}: not a runs CSV of a study report (missing columns {', '.join(missing)})")
    runs["layers"] = runs["layers"].astype(str)
    runs["layer"] = [int(l) if s == "gate" and l.isdigit() else None for s, l in zip(runs["strategy"], runs["layers"])]
    cap = int(epochs) if epochs else int(runs["epochs"].max())
    runs = fill_endings(assign_roles(runs, num_layers), cap, patience, eval_every)
    if "epoch_cap" not in runs.columns:
        runs["epoch_cap"] = cap
    for col in ("cold users", "warm users"):
        if col not in runs.columns:
            runs[col] = np.nan
    first = lambda col: str(runs[col].dropna().iloc[0]) if col in runs.columns and runs[col].notna().any() else ""  # noqa: E731
    return StudyData(study=study or first("study") or str(path), runs=runs, num_layers=num_layers,
                     dataset=first("dataset"), features=first("features"), captions=captions,
                     progress={"total": len(runs), "done": len(runs)},
                     weights_summary=pd.read_csv(weights_csv) if weights_csv else None)


# ------------------------------------------------------------------------------------------ statistics

@dataclass
class Comparison:
    """One part of a finding: is ``a`` better than ``b`` on the test metric, paired by seed?"""
    finding: int
    part: str
    claim: str
    a: str
    b: str
    primary: bool = True
    metric: str = "NDCG@10"
    n: int = 0
    mean_a: float = float("nan")
    std_a: float = float("nan")
    mean_b: float = float("nan")
    std_b: float = float("nan")
    diff: float = float("nan")
    t: float = float("nan")
    p: float = float("nan")
    p_perm: float = float("nan")
    verdict: str = INCONCLUSIVE
    reason: str = ""
    seeds: list = field(default_factory=list)
    under_trained: int = 0                   # runs of the two roles that hit the epoch cap while still improving
    runs: int = 0                            # runs of the two roles
    capped_runs: list = field(default_factory=list)   # their run ids

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seeds"] = ",".join(str(s) for s in self.seeds)
        d["capped_runs"] = ",".join(str(r) for r in self.capped_runs)
        return d


def sign_flip_p(diffs: np.ndarray) -> float:
    """Exact two-sided sign-flip permutation p of the mean paired difference (2^n flips)."""
    diffs = np.asarray(diffs, dtype=float)
    n = len(diffs)
    if n == 0 or n > 16:
        return float("nan")
    observed = abs(diffs.mean())
    flips = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    means = np.abs((flips * diffs).mean(axis=1))
    return float((means >= observed - 1e-12).mean())


def paired_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(t, two-sided p) of the paired t-test; identical pairs give p = 1, a constant non-zero shift p = 0."""
    from scipy.stats import ttest_rel

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) < 2:
        return float("nan"), float("nan")
    if np.allclose(d, d[0], rtol=0, atol=1e-12):
        return (0.0, 1.0) if abs(d[0]) <= 1e-12 else (math.copysign(math.inf, d[0]), 0.0)
    res = ttest_rel(a, b)
    return float(res.statistic), float(res.pvalue)


def compare(c: Comparison, a: pd.Series, b: pd.Series, capped_runs: list | tuple = (),
            runs: int | None = None) -> Comparison:
    """Fill ``c`` from per-seed values (index = seed) of the two roles and decide the verdict.

    ``capped_runs``: ids of the two roles' runs that hit the epoch cap while still improving; any of them
    makes the part ``under-trained`` (the t-test's own verdict is kept in the reason, for reference)."""
    c.capped_runs, c.under_trained = [int(r) for r in capped_runs], len(capped_runs)
    c.runs = int(runs) if runs is not None else len(a) + len(b)
    _decide(c, a, b)
    if c.under_trained and not (a.empty or b.empty):
        c.reason = (f"not decided: {c.under_trained} of {c.runs} runs hit the epoch cap while still improving "
                    f"(train to early stopping: raise epochs); on these under-trained runs the t-test says "
                    f"{c.verdict}: {c.reason}")
        c.verdict = UNDER_TRAINED
    return c


def _decide(c: Comparison, a: pd.Series, b: pd.Series) -> Comparison:
    c.mean_a, c.std_a = _mean_std(a)
    c.mean_b, c.std_b = _mean_std(b)
    seeds = sorted(set(a.index) & set(b.index))
    c.seeds, c.n = seeds, len(seeds)
    if a.empty or b.empty:
        missing = " and ".join(r for r, s in ((c.a, a), (c.b, b)) if s.empty)
        c.reason = f"no finished runs for {missing}"
        return c
    va, vb = a.loc[seeds].to_numpy(float), b.loc[seeds].to_numpy(float)
    if c.n:
        c.diff = float((va - vb).mean())
        c.p_perm = sign_flip_p(va - vb)
    if c.n < MIN_SEEDS:
        c.reason = f"only {c.n} paired seed(s); a paired test needs at least {MIN_SEEDS}"
        return c
    c.t, c.p = paired_test(va, vb)
    if not c.p < ALPHA:
        c.reason = f"p = {c.p:.3g} ≥ {ALPHA}: the difference is within seed-to-seed noise"
    elif c.diff > 0:
        c.verdict, c.reason = SUPPORTED, f"{c.a} beats {c.b} by {c.diff:+.4f} (p = {c.p:.3g})"
    else:
        c.verdict, c.reason = CONTRADICTED, f"{c.b} beats {c.a} by {-c.diff:+.4f} (p = {c.p:.3g})"
    return c


def _mean_std(s: pd.Series) -> tuple[float, float]:
    if s.empty:
        return float("nan"), float("nan")
    return float(s.mean()), float(s.std(ddof=1)) if len(s) > 1 else 0.0


def per_seed(runs: pd.DataFrame, role: str, col: str) -> pd.Series:
    """The role's value per seed (mean if a seed ran twice), NaNs dropped."""
    part = runs[(runs["role"] == role)].dropna(subset=[col])
    if part.empty:
        return pd.Series(dtype=float)
    return part.groupby("seed")[col].mean().astype(float)


# --------------------------------------------------------------------------------------------- findings

@dataclass
class Finding:
    number: int
    title: str
    parts: list[Comparison]
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        primary = [p for p in self.parts if p.primary] or self.parts
        if any(p.verdict == CONTRADICTED for p in primary):
            return CONTRADICTED
        if any(p.verdict == UNDER_TRAINED for p in primary):
            return UNDER_TRAINED
        if primary and all(p.verdict == SUPPORTED for p in primary):
            return SUPPORTED
        return INCONCLUSIVE

    @property
    def under_trained(self) -> int:
        """Distinct runs behind this finding's under-trained primary parts (capped while improving)."""
        primary = [p for p in self.parts if p.primary] or self.parts
        return len({r for p in primary if p.verdict == UNDER_TRAINED for r in p.capped_runs})


FINDING_TITLES = {
    1: "Hidden states beat the caption route (same backbone)",
    2: "ID embeddings are essential, and fusion beats replacement",
    3: "Intermediate layers beat the last one, and DFF beats the best single layer",
}


def capped_mask(runs: pd.DataFrame) -> pd.Series:
    """True for runs that hit the epoch cap while still improving (unknown endings count as decided)."""
    if "ending" not in runs.columns:
        return pd.Series(False, index=runs.index)
    return runs["ending"].fillna("").astype(str).eq(CAPPED_IMPROVING)


def fill_endings(runs: pd.DataFrame, epochs: int, patience: int, eval_every: int = 1) -> pd.DataFrame:
    """Runs without a stored ending (an older runs CSV) get one from epochs run and best epoch, judged with
    each run's own epoch cap, patience and evaluation interval (columns ``epoch_cap``, ``patience``,
    ``eval_every``) where the CSV has them, else the study's ``epochs``, ``patience`` and ``eval_every``
    (``dff_core.endings.from_summary``): runs trained with another patience are never judged by one assumed."""
    from dff_core.endings import from_summary

    out = runs.copy()
    if "ending" not in out.columns:
        out["ending"] = ""
    known = out["ending"].fillna("").astype(str)

    def own(column: str, fallback: int) -> list[int]:
        values = out[column] if column in out.columns else pd.Series([None] * len(out), index=out.index)
        return [int(v) if pd.notna(v) else int(fallback) for v in values]

    out["ending"] = [e if e else from_summary(int(n), int(b) if pd.notna(b) else None, cap, pat, every)
                     for e, n, b, cap, pat, every in zip(known, out["epochs"], out["best_epoch"],
                                                         own("epoch_cap", epochs), own("patience", patience),
                                                         own("eval_every", eval_every))]
    return out


def single_layers(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["role"].str.startswith("gate@")]


def best_layer(runs: pd.DataFrame, metric: str, exclude: set[int] | None = None) -> int | None:
    """The single layer with the best mean *validation* metric (ties: the deeper layer)."""
    single = single_layers(runs).dropna(subset=[f"val {metric}"])
    if exclude:
        single = single[~single["layer"].astype(int).isin(exclude)]
    if single.empty:
        return None
    means = single.groupby(single["layer"].astype(int))[f"val {metric}"].mean()
    return int(means[means == means.max()].index.max())


def evaluate(data: StudyData, metric: str = "NDCG@10") -> list[Finding]:
    """The three findings with their parts, from ``data.runs`` alone."""
    runs, col, last = data.runs, f"test {metric}", data.last
    seeds = lambda role: per_seed(runs, role, col)  # noqa: E731
    gate_last = f"gate@{last}" if last is not None else "gate@last"

    def part(finding, name, claim, a, b, primary=True):
        mine = runs[runs["role"].isin([a, b])].dropna(subset=[col])
        capped = mine[capped_mask(mine)]["run_id"].astype(int).tolist()
        return compare(Comparison(finding, name, claim, a, b, primary=primary, metric=metric), seeds(a), seeds(b),
                       capped_runs=capped, runs=len(mine))

    inner = best_layer(runs, metric, exclude={0, last} if last is not None else {0})
    best = best_layer(runs, metric)
    inner_role = f"gate@{inner}" if inner is not None else "gate@(intermediate)"
    f1 = Finding(1, FINDING_TITLES[1], [
        part(1, "1a", "best intermediate hidden state (gate) > caption route (gate)", inner_role, "caption"),
        part(1, "1b", "last hidden state (gate) > caption route (gate)", gate_last, "caption", primary=False)])
    if not data.captions and seeds("caption").empty:
        f1.notes.append("no caption feature set was given (--captions), so the caption route was not run")

    f2 = Finding(2, FINDING_TITLES[2], [
        part(2, "2a", "ID essential: ID only > replacement (features without IDs)", "id", "replace"),
        part(2, "2b", "fusion (gate) > replacement", gate_last, "replace"),
        part(2, "2c", "fusion (gate) > initialisation", gate_last, "init", primary=False),
    ])

    f3 = Finding(3, FINDING_TITLES[3], [])
    f3.parts.append(part(3, "3a", "best intermediate layer > last layer", inner_role, gate_last))
    dff_roles = sorted({r for r in runs["role"] if r.startswith("dff ")}, key=lambda r: (r != "dff all", r))
    best_role = f"gate@{best}" if best is not None else "gate@(best)"
    f3.parts.append(part(3, "3b", "DFF over all layers > best single layer", "dff all", best_role))
    for role in dff_roles:
        if role != "dff all":
            f3.parts.append(part(3, "3c", f"DFF over layers {role[4:]} > best single layer", role, best_role,
                                 primary=False))
    if inner is not None:
        f3.notes.append(f"best intermediate layer by validation {metric}: {inner}; best single layer: {best}; "
                        f"last layer: {last}")
    return [f1, f2, f3]


# ------------------------------------------------------------------------------------------- tables

def role_table(data: StudyData, metric: str = "NDCG@10") -> pd.DataFrame:
    """Mean ± std over seeds per role: test and validation metric, cold and warm test metric, seconds."""
    cols = ["role", "strategy", "layers", "seeds", f"test {metric} mean", f"test {metric} std",
            f"val {metric} mean", f"cold {metric} mean", f"warm {metric} mean", "s/epoch", "epochs run",
            "capped while improving", "run ids"]
    runs = data.runs
    if runs.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for role, g in runs.groupby("role", sort=False):
        t = g[f"test {metric}"].astype(float)
        rows.append({"role": role, "strategy": g["strategy"].iloc[0], "layers": g["layers"].iloc[0],
                     "seeds": int(g["seed"].nunique()), f"test {metric} mean": t.mean(),
                     f"test {metric} std": t.std(ddof=1) if len(t) > 1 else 0.0,
                     f"val {metric} mean": g[f"val {metric}"].astype(float).mean(),
                     f"cold {metric} mean": g[f"cold {metric}"].astype(float).mean(),
                     f"warm {metric} mean": g[f"warm {metric}"].astype(float).mean(),
                     "s/epoch": g["s_per_epoch"].astype(float).mean(),
                     "epochs run": ",".join(str(int(e)) if pd.notna(e) else "?" for e in g["epochs"]),
                     "capped while improving": int(capped_mask(g).sum()),
                     "run ids": ",".join(str(int(r)) for r in g["run_id"])})
    order = {"id": 0, "replace": 1, "init": 2, "caption": 3}
    out = pd.DataFrame(rows, columns=cols)
    key = [(order.get(r, 4), int(r[5:]) if r.startswith("gate@") else 10 ** 6, r) for r in out["role"]]
    return out.iloc[sorted(range(len(out)), key=lambda i: key[i])].reset_index(drop=True)


def layer_curve(data: StudyData, metric: str = "NDCG@10") -> pd.DataFrame:
    """Single-layer gate fusion by depth: test and validation mean ± std over seeds."""
    cols = ["layer", "seeds", "test mean", "test std", "val mean", "val std"]
    single = single_layers(data.runs)
    if single.empty:
        return pd.DataFrame(columns=cols)
    g = single.groupby(single["layer"].astype(int))
    out = pd.DataFrame({"seeds": g["seed"].nunique(), "test mean": g[f"test {metric}"].mean(),
                        "test std": g[f"test {metric}"].std(ddof=1), "val mean": g[f"val {metric}"].mean(),
                        "val std": g[f"val {metric}"].std(ddof=1)}).fillna({"test std": 0.0, "val std": 0.0})
    out.index.name = "layer"
    return out.reset_index()[cols]


def weights_table(data: StudyData) -> pd.DataFrame:
    """DFF layer weights: mean and std over seeds per (role, layer)."""
    if data.weights_summary is not None and data.weights.empty:
        return data.weights_summary[["role", "layer", "mean", "std", "seeds"]].reset_index(drop=True)
    w = data.weights
    if w.empty:
        return pd.DataFrame(columns=["role", "layer", "mean", "std", "seeds"])
    g = w.groupby(["role", "layer"])["weight"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1).fillna(0.0), "seeds": g.size()}).reset_index()
    return out.sort_values(["role", "layer"]).reset_index(drop=True)


def cold_warm(data: StudyData, metric: str = "NDCG@10") -> pd.DataFrame:
    """Cold vs warm test targets per role (long format): role, bucket, mean, std, users."""
    rows = []
    for role, g in data.runs.groupby("role", sort=False):
        for bucket in ("cold", "warm"):
            v = g[f"{bucket} {metric}"].dropna().astype(float)
            if v.empty:
                continue
            rows.append({"role": role, "bucket": bucket, "mean": v.mean(), "std": v.std(ddof=1) if len(v) > 1 else 0.0,
                         "users": g[f"{bucket} users"].max()})
    return pd.DataFrame(rows, columns=["role", "bucket", "mean", "std", "users"])


def verdict_frame(findings: list[Finding]) -> pd.DataFrame:
    """One row per part (the verdicts CSV), with the finding's overall verdict alongside."""
    rows = []
    for f in findings:
        for c in f.parts:
            rows.append({"finding": f.number, "finding_title": f.title, "finding_verdict": f.verdict, **c.to_dict()})
    cols = ["finding", "finding_title", "finding_verdict", "part", "claim", "primary", "a", "b", "metric", "n",
            "seeds", "mean_a", "std_a", "mean_b", "std_b", "diff", "t", "p", "p_perm", "verdict", "under_trained",
            "runs", "reason"]
    return pd.DataFrame(rows, columns=cols)
