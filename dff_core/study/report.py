"""A study's report: plotly figures, a self-contained HTML file (plotly.js embedded once), and CSV tables.

The HTML opens offline and can be attached to a paper or an issue: no external script or stylesheet.
"""
from __future__ import annotations

import html
from datetime import datetime, timezone

import pandas as pd
import plotly.graph_objects as go

from dff_core.compare import weight_spread
from dff_core.study.verdicts import (CONTRADICTED, SUPPORTED, UNDER_TRAINED, Finding, StudyData, capped_mask,
                                     cold_warm, evaluate, layer_curve, role_table, verdict_frame, weights_table)

COLORS = {SUPPORTED: "#1a7f37", CONTRADICTED: "#cf222e", "inconclusive": "#9a6700", UNDER_TRAINED: "#8250df"}
RUN_CSV_COLUMNS = ["run_id", "study", "dataset", "features", "role", "strategy", "layers", "seed", "epochs",
                   "best_epoch", "ending", "epoch_cap", "patience", "eval_every", "s_per_epoch", "seconds"]


# ----------------------------------------------------------------------------------------------- figures

def figure_layer_curve(data: StudyData, metric: str = "NDCG@10") -> go.Figure:
    """Test (and validation) metric of single-layer gate fusion by depth, with the other roles as lines."""
    curve = layer_curve(data, metric)
    fig = go.Figure()
    if len(curve):
        fig.add_trace(go.Scatter(x=curve["layer"], y=curve["test mean"], mode="lines+markers", name=f"test {metric}",
                                 error_y={"type": "data", "array": curve["test std"], "visible": True}))
        fig.add_trace(go.Scatter(x=curve["layer"], y=curve["val mean"], mode="lines+markers", name=f"val {metric}",
                                 line={"dash": "dot"}))
    table = role_table(data, metric)
    for role in ("id", "caption", "dff all") + tuple(r for r in table["role"] if r.startswith("dff ") and r != "dff all"):
        row = table[table["role"] == role]
        if len(row):
            fig.add_hline(y=float(row[f"test {metric} mean"].iloc[0]), line_dash="dash", opacity=0.6,
                          annotation_text=f"{role} (test)", annotation_position="top left")
    fig.update_layout(title=f"Single-layer fusion across depth (mean ± std over seeds)", xaxis_title="layer",
                      yaxis_title=metric, height=420, margin={"t": 50, "l": 60, "r": 20, "b": 50})
    return fig


def figure_roles(data: StudyData, metric: str = "NDCG@10") -> go.Figure:
    table = role_table(data, metric)
    fig = go.Figure(go.Bar(x=table["role"], y=table[f"test {metric} mean"],
                           error_y={"type": "data", "array": table[f"test {metric} std"], "visible": True},
                           text=[f"{v:.4f}" for v in table[f"test {metric} mean"]], textposition="outside"))
    fig.update_layout(title=f"Test {metric} per run type (mean ± std over seeds)", yaxis_title=metric, height=420,
                      margin={"t": 50, "l": 60, "r": 20, "b": 80})
    return fig


def figure_weights(data: StudyData) -> go.Figure:
    w = weights_table(data)
    fig = go.Figure()
    for role, g in w.groupby("role", sort=True):
        fig.add_trace(go.Bar(x=g["layer"], y=g["mean"], name=role,
                             error_y={"type": "data", "array": g["std"], "visible": True}))
    spread = spread_table(data)
    glance = "; ".join(f"{role}: max / uniform {g['max / uniform'].mean():.2f}"
                       for role, g in spread.groupby("role", sort=True))
    title = "Learned DFF layer weights softmax(w) (mean ± std over seeds)" + (f"<br><sup>{glance} (1 = averaged)</sup>"
                                                                             if glance else "")
    fig.update_layout(title=title, xaxis_title="layer",
                      yaxis_title="weight", barmode="group", height=380, margin={"t": 50, "l": 60, "r": 20, "b": 50})
    return fig


def figure_cold_warm(data: StudyData, metric: str = "NDCG@10") -> go.Figure:
    cw = cold_warm(data, metric)
    fig = go.Figure()
    for bucket, g in cw.groupby("bucket", sort=True):
        users = g["users"].max()
        fig.add_trace(go.Bar(x=g["role"], y=g["mean"], name=f"{bucket} ({int(users) if pd.notna(users) else '?'} users)",
                             error_y={"type": "data", "array": g["std"], "visible": True}))
    fig.update_layout(title=f"Cold vs warm test targets: {metric} (mean ± std over seeds)", yaxis_title=metric,
                      barmode="group", height=400, margin={"t": 50, "l": 60, "r": 20, "b": 80})
    return fig


def figures(data: StudyData, metric: str = "NDCG@10") -> dict[str, go.Figure]:
    return {"layer curve": figure_layer_curve(data, metric), "run types": figure_roles(data, metric),
            "DFF layer weights": figure_weights(data), "cold / warm": figure_cold_warm(data, metric)}


# ------------------------------------------------------------------------------------------------- CSV

def verdicts_csv(findings: list[Finding]) -> str:
    return verdict_frame(findings).to_csv(index=False, float_format="%.6g")


def runs_table(data: StudyData, metric_cols: bool = True) -> pd.DataFrame:
    runs = data.runs
    metric_columns = [c for c in runs.columns if c.split(" ", 1)[0] in ("test", "val", "cold", "warm")]
    cols = [c for c in RUN_CSV_COLUMNS if c in runs.columns] + (metric_columns if metric_cols else [])
    return runs[cols].sort_values(["role", "seed"]).reset_index(drop=True) if len(runs) else runs.reindex(columns=cols)


def runs_csv(data: StudyData) -> str:
    return runs_table(data).to_csv(index=False, float_format="%.6g")


# ------------------------------------------------------------------------------------------------ HTML

def _fmt(v, digits: int = 4) -> str:
    try:
        if v is None or pd.isna(v):
            return "—"
    except (TypeError, ValueError):
        pass
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) >= 10 ** -digits or v == 0 else f"{v:.2e}"
    return html.escape(str(v))


def _badge(verdict: str, capped: int = 0) -> str:
    """A coloured verdict badge; an under-trained one carries the count of runs capped while improving."""
    count = f" · {capped} run{'s' if capped != 1 else ''} capped while improving" if verdict == UNDER_TRAINED else ""
    return (f'<span class="badge" style="background:{COLORS.get(verdict, "#57606a")}">'
            f"{html.escape(verdict + count)}</span>")


def capped_summary(data: StudyData) -> str | None:
    """One line when some of the study's runs hit the epoch cap while still improving, else None."""
    runs = data.runs
    n = int(capped_mask(runs).sum()) if len(runs) else 0
    if not n:
        return None
    cap = runs.loc[capped_mask(runs), "epochs"].max()
    return (f"{n} of {len(runs)} runs hit the epoch cap ({int(cap) if pd.notna(cap) else '?'} epochs) while still "
            "improving: their numbers are those of under-trained models, so every comparison that uses them is "
            "under-trained (not decided). Train to early stopping with a higher epoch cap to decide.")


def _table(frame: pd.DataFrame, digits: int = 4) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v, digits)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def spread_table(data: StudyData) -> pd.DataFrame:
    """Per DFF run (role, seed): did it choose layers or average them (:func:`dff_core.compare.weight_spread`)."""
    return weight_spread(data.weights, by=["role", "seed"])


def _spread_html(data: StudyData) -> str:
    spread = spread_table(data)
    if spread.empty:
        return ""
    return ("<p>Spread of the learned weights per run: <i>max / uniform</i> near 1 means the softmax stayed "
            "uniform and DFF averaged its layers (it is then close to gate fusion of their mean); it reaches the "
            "number of layers when all weight is on one layer.</p>" + _table(spread, 3))


def compute_summary(data: StudyData) -> dict:
    runs = data.runs
    seconds = float(runs["seconds"].astype(float).sum()) if len(runs) else 0.0
    return {"runs": int(len(runs)), "seeds": sorted(int(s) for s in runs["seed"].dropna().unique()) if len(runs) else [],
            "train_seconds": seconds}


def render_html(data: StudyData, metric: str = "NDCG@10", compute_note: str | None = None,
                findings: list[Finding] | None = None) -> str:
    """The whole report as one HTML string; plotly.js is inlined with the first figure only."""
    findings = findings if findings is not None else evaluate(data, metric)
    summary = compute_summary(data)
    parts = []
    for f in findings:
        rows = "".join(
            f"<tr><td>{html.escape(c.part)}{'' if c.primary else ' (secondary)'}</td><td>{html.escape(c.claim)}</td>"
            f"<td>{html.escape(c.a)}: {_fmt(c.mean_a)} ± {_fmt(c.std_a)}</td>"
            f"<td>{html.escape(c.b)}: {_fmt(c.mean_b)} ± {_fmt(c.std_b)}</td><td>{_fmt(c.diff)}</td>"
            f"<td>{c.n}</td><td>{_fmt(c.p, 3)}</td><td>{_fmt(c.p_perm, 3)}</td>"
            f"<td>{_badge(c.verdict, c.under_trained)}</td>"
            f"<td>{html.escape(c.reason)}</td></tr>" for c in f.parts)
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in f.notes)
        parts.append(
            f'<section class="finding"><h3>Finding {f.number}: {html.escape(f.title)} {_badge(f.verdict, f.under_trained)}</h3>'
            f"<table><thead><tr><th>part</th><th>claim</th><th>A (mean ± std)</th><th>B (mean ± std)</th>"
            f"<th>mean A−B</th><th>paired seeds</th><th>p (paired t)</th><th>p (sign-flip)</th><th>verdict</th>"
            f"<th>why</th></tr></thead><tbody>{rows}</tbody></table>"
            + (f"<ul>{notes}</ul>" if notes else "") + "</section>")
    figs = []
    for i, (name, fig) in enumerate(figures(data, metric).items()):
        figs.append(f"<h3>{html.escape(name)}</h3>" + fig.to_html(full_html=False, include_plotlyjs=(i == 0),
                                                                      config={"displaylogo": False}))
    roles = role_table(data, metric)
    weights = weights_table(data)
    progress = data.progress or {}
    progress_line = (f"{progress.get('done', 0)} of {progress.get('total', 0)} training jobs done"
                     + (f", {progress.get('failed', 0)} failed" if progress.get("failed") else "")
                     if progress.get("total") else "")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    capped = capped_summary(data)
    banner = f'<p class="warn">{html.escape(capped)}</p>' if capped else ""
    has_dff = bool(len(data.runs)) and bool((data.runs["strategy"] == "dff").any())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>DFF Studio study: {html.escape(data.study)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #1f2328; }}
table {{ border-collapse: collapse; margin: .5em 0 1em; font-size: 13px; }}
th, td {{ border: 1px solid #d0d7de; padding: 3px 7px; text-align: left; vertical-align: top; }}
th {{ background: #f6f8fa; }}
.badge {{ color: white; border-radius: 4px; padding: 1px 7px; font-size: 12px; font-weight: 600; }}
.finding {{ margin-bottom: 1.5em; }} .meta td:first-child {{ font-weight: 600; }}
.warn {{ background: #fbefff; border-left: 4px solid #8250df; padding: .5em .8em; }}
</style></head><body>
<h1>Study <code>{html.escape(data.study)}</code></h1>
<p>Do the three findings of "Frozen LVLMs for Micro-Video Recommendation" (arXiv 2512.21863) hold on this data
and backbone? Verdicts are computed from the stored runs; metric: test {html.escape(metric)} (leave-one-out,
full ranking, seen items excluded).</p>
<table class="meta">
<tr><td>dataset</td><td>{html.escape(data.dataset)}</td></tr>
<tr><td>hidden-state features</td><td>{html.escape(data.features)} ({data.num_layers if data.num_layers else '?'} stored layers, 0 = embedding output)</td></tr>
<tr><td>caption features</td><td>{html.escape(data.captions or '—')}</td></tr>
<tr><td>finished runs</td><td>{summary['runs']} (seeds {', '.join(str(s) for s in summary['seeds']) or '—'}){'; ' + html.escape(progress_line) if progress_line else ''}</td></tr>
<tr><td>training time</td><td>{summary['train_seconds'] / 60:.1f} min summed over runs{'; ' + html.escape(compute_note) if compute_note else ''}</td></tr>
<tr><td>generated</td><td>{generated}</td></tr>
</table>
<h2>Verdicts</h2>
{banner}
<p>Each part compares two run types paired by seed: two-sided paired t-test; p &lt; 0.05 in the claimed direction
= supported, in the other direction = contradicted, otherwise (or with fewer than 3 paired seeds) inconclusive.
With 2–5 seeds a sign or permutation test cannot reach p &lt; 0.05 (n = 3: smallest p = 0.25), so the t-test
decides and the exact sign-flip p is shown for reference. "Best" layers are chosen on the validation metric
and compared on test. A part whose runs include any that hit the epoch cap while still improving is
<b>under-trained</b>: not decided, whatever the t-test says (a cap turns a faster start into an apparent win).
A finding is supported when all its primary parts are, and never while any of them is under-trained.</p>
{''.join(parts)}
<h2>Plots</h2>
{''.join(figs)}
<h2>Run types</h2>
{_table(roles)}
<h2>DFF layer weights</h2>
{_spread_html(data)}
{_table(weights) if len(weights) else ('<p>no layer weights stored for these DFF runs (a report rebuilt from a runs '
                                       'CSV has none)</p>' if has_dff else '<p>no DFF runs finished</p>')}
<h2>Runs</h2>
{_table(runs_table(data))}
</body></html>
"""
