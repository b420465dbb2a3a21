"""Compare: leaderboard over seeds, strategy bars, metric-by-layer curves, DFF layer weights, cold vs warm."""
from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dff_core import compare
from dff_core.metric_names import METRICS
from pages.common import PLOT_CONFIG, database, empty_state, plain, reported
from storage import views

db = database()
st.title("Compare")

runs = views.runs_frame(db)
if runs.empty:
    empty_state("No finished runs yet — launch training (or a sweep) on the Train page, or run the demo study "
                "from Home; finished runs appear here.", "pages/train.py", "Train page")
    st.stop()


def mark_capped(fig, bar: bool = False) -> None:
    """A distinct marker for points/bars whose runs include some capped while improving (custom_data[0] > 0):
    an ✕ marker on lines, a hatched bar."""
    for trace in fig.data:
        flags = [bool(c[0]) for c in (trace.customdata if trace.customdata is not None else [])]
        if not any(flags):
            continue
        if bar:
            trace.update(marker_pattern_shape=["x" if f else "" for f in flags])
        else:
            trace.update(marker_symbol=["x" if f else "circle" for f in flags],
                         marker_size=[12 if f else 6 for f in flags])


GROUP_COLUMNS = compare.GROUP


def _options(col: str) -> list[str]:
    return sorted(str(v) for v in runs[col].dropna().unique() if str(v))


f = st.columns([1, 1, 1, 1, 0.8, 0.6])
datasets = f[0].multiselect("Dataset", _options("dataset"), key="cmp_dataset", placeholder="all")
backbones = f[1].multiselect("Backbone", _options("backbone"), key="cmp_backbone", placeholder="all")
strategies = f[2].multiselect("Strategy", _options("strategy"), key="cmp_strategy", placeholder="all")
studies = f[3].multiselect("Study", _options("study"), key="cmp_study", placeholder="all")
metric = f[4].selectbox("Metric", list(METRICS), key="cmp_metric")
split = f[5].selectbox("Split", ["test", "val"], key="cmp_split")
n_capped = int(compare.is_capped(compare.filter_runs(runs, datasets, backbones, strategies, studies)).sum())
hide_capped = st.checkbox(f"Hide runs capped while improving ({n_capped})", key="cmp_hide_capped",
                          help="runs that hit their epoch cap while the validation metric was still improving: "
                               "under-trained, so they cannot decide a comparison (a cap favours whatever learns "
                               "fastest). Same as `python -m dff_core compare --hide-capped`.")
shown = compare.filter_runs(runs, datasets, backbones, strategies, studies, hide_capped=hide_capped)
if shown.empty:
    if hide_capped and n_capped:
        st.warning(f"All {n_capped} runs that match the filters hit their epoch cap while still improving, and "
                   "*Hide runs capped while improving* leaves them out — untick it to see them, or train them to "
                   "early stopping with a higher epoch cap.", icon=":material/hourglass_bottom:")
    else:
        st.warning("No run matches these filters — clear some of them.")
    st.stop()
if n_capped and not hide_capped:
    st.warning(f"{n_capped} of these runs hit their epoch cap while still improving (marked ⚠ in the leaderboard, "
               "✕ in the plots): their numbers are of under-trained models. Train them to early stopping with a "
               "higher epoch cap, or hide them.", icon=":material/hourglass_bottom:")

ids = shown["run_id"].astype(int).tolist()
st.caption(f"{len(shown)} finished run{'s' if len(shown) != 1 else ''} match{'es' if len(shown) == 1 else ''}: " + ", ".join(f"#{i}" for i in ids[-30:])
           + (" …" if len(ids) > 30 else ""))

# ---------------------------------------------------------------------------------------- leaderboard
board = compare.leaderboard(shown, metric, split)
st.subheader(f"Leaderboard · {split} {metric}, mean ± std over seeds")
labels = {i: compare.row_label(r) for i, r in board.iterrows()}
tests = None
if len(board) >= 2:
    order = list(board.index)
    baseline = st.selectbox("Baseline to beat", order, index=order.index(compare.default_baseline(board)),
                            format_func=labels.get, key="cmp_baseline",
                            help="every other row is tested against this one, paired by seed: a paired t-test "
                                 "over the seeds both ran (at least 3), α = 0.05 — the Study page's test. Same as "
                                 "`python -m dff_core versus --baseline N`.")
    tests = compare.versus_baseline(shown, board, baseline, metric, split)
    best = compare.winner(board, tests)
    if best["baseline_is_best"]:
        st.info(plain(f"The baseline {labels[baseline]} has the best mean. Next best: {best['label']} — "
                      f"{best['verdict']}: {best['reason']}"), icon=":material/info:")
    elif best["beats_baseline"]:
        st.success(plain(f"Winner: {best['reason']}"), icon=":material/emoji_events:")
    else:
        st.warning(plain(f"Best mean: {best['label']} ({best['mean']:.4f}), but it does not beat "
                         f"{labels[baseline]}: {best['verdict']} — {best['reason']}"), icon=":material/balance:")
shown_board = board.drop(columns=["mean", "std", "capped"])
if tests is not None:
    mark = {i: ("★ " if i == best["row"] and best["beats_baseline"] else "") + v
            for i, v in tests["verdict"].items()}
    shown_board.insert(0, "vs baseline", [mark[i] for i in board.index])
    # text, not numbers: p spans orders of magnitude (2e-06 must not read 0) and the baseline row has none
    shown_board.insert(len(GROUP_COLUMNS) + 3, "Δ vs baseline",
                       ["—" if v != v or t == "baseline" else f"{v:+.4f}"
                        for v, t in zip(tests["Δ vs baseline"], tests["verdict"])])
    shown_board.insert(len(GROUP_COLUMNS) + 4, "p", ["—" if v != v else f"{v:.2g}" for v in tests["p"]])
st.dataframe(shown_board, hide_index=True, width="stretch",
             column_config={"seeds": st.column_config.NumberColumn("seeds", help="runs averaged"),
                            "vs baseline": st.column_config.TextColumn(
                                "vs baseline", help="paired test against the baseline row: better / worse at "
                                                    "p < 0.05, no clear difference, too few seeds (under 3 shared), "
                                                    "under-trained (capped runs); ★ = the winner"),
                            "p": st.column_config.TextColumn("p", help="two-sided paired t-test p-value (— : "
                                                                      "fewer than 3 paired seeds)"),
                            "training": st.column_config.TextColumn(
                                "training", help="converged: every run ended by early stopping; capped while "
                                                 "improving: some runs hit the epoch cap still improving")})
d1, d2 = st.columns(2)
d1.download_button("Download leaderboard (CSV)", board.to_csv(index=False).encode(), "leaderboard.csv", "text/csv",
                   key="dl_board", icon=":material/download:")
d2.download_button("Download all matching runs (CSV)", shown.to_csv(index=False).encode(), "runs.csv", "text/csv",
                   key="dl_runs", icon=":material/download:")
with st.expander("Export these runs to MLflow"):
    target = st.text_input("MLflow folder (inside the database's folder)", "mlruns", key="cmp_mlflow_dir")
    if st.button(f"Export {len(ids)} runs", key="cmp_mlflow_export", icon=":material/upload:"):
        with reported("MLflow export failed"):
            from jobs.export_mlflow import export_dir, export_runs
            out = export_runs(db, str(export_dir(db.path, target)), run_ids=ids)
            st.success(f"Exported {out['runs']} runs ({out['created']} new, {out['updated']} updated) to:",
                       icon=":material/check_circle:")
            st.code(out["tracking_uri"], language=None)

# ------------------------------------------------------------------------------------------ strategies
bars = compare.strategy_bars(shown, metric, split)
left, right = st.columns(2)
with left:
    fig = px.bar(bars, x="strategy", y="mean", error_y="std", color="backbone", barmode="group",
                 hover_data=["layers", "seeds", "dataset", "training"], custom_data=["capped"],
                 title=f"Strategies (best layer choice of each) · {split} {metric}")
    mark_capped(fig, bar=True)
    if int(bars["capped"].sum()):  # say in the legend what the hatching means
        fig.add_trace(go.Bar(x=[None], y=[None], name="hatched ✕: capped while improving", showlegend=True,
                             marker=dict(color="rgba(0,0,0,0)", line=dict(color="#666", width=1),
                                         pattern=dict(shape="x", fgcolor="#666"))))
    pop = shown["popularity test NDCG@10"].dropna()
    if split == "test" and metric == "NDCG@10" and len(pop):
        # a legend entry, not a label on the line: a label sat over the bars it crossed
        fig.add_trace(go.Scatter(x=list(dict.fromkeys(bars["strategy"])), y=[float(pop.mean())] * bars["strategy"].nunique(),
                                 mode="lines", name=f"popularity baseline ({float(pop.mean()):.4f})",
                                 line=dict(dash="dot", color="#444")))
    fig.update_layout(yaxis_title=metric, height=380, legend_title_text="backbone")
    st.plotly_chart(fig, width="stretch", config=PLOT_CONFIG)

with right:
    buckets = compare.bucket_frame(shown, metric)
    if buckets.empty:
        st.info("No cold/warm breakdown stored for these runs.", icon=":material/info:")
    else:
        buckets["label"] = buckets["strategy"] + " · " + buckets["backbone"]
        # every bar carries its value and user count, so a 0 (no cold user hit) is a label, not a missing bar
        buckets["text"] = [f"{m:.3f} · {int(u) if u == u else '?'} users" for m, u in zip(buckets["mean"], buckets["users"])]
        fig = px.bar(buckets, x="label", y="mean", error_y="std", color="bucket", barmode="group", text="text",
                     hover_data=["users"], color_discrete_map={"cold": "#4c78a8", "warm": "#f58518"},
                     title=f"Cold vs warm test targets · {metric}")
        fig.update_traces(textposition="outside", cliponaxis=False, textfont_size=10)
        fig.update_layout(xaxis_title="strategy · backbone", yaxis_title=metric, height=380,
                          yaxis_range=[0, max(0.05, float((buckets["mean"] + buckets["std"]).max()) * 1.25)])
        st.plotly_chart(fig, width="stretch", config=PLOT_CONFIG)
        threshold = int(shown["cold threshold"].dropna().max()) if shown["cold threshold"].notna().any() else 5
        st.caption(f"Cold: the test item was seen at most {threshold} times in training; warm: more often. "
                   "Each bar says how many test users it averages.")

# -------------------------------------------------------------------------------------------- layers
st.subheader("Metric versus layer")
curve = compare.layer_curve(shown, metric, split)
if curve.empty:
    st.info("No single-layer runs yet. Launch a sweep on the Train page with one layer per choice (e.g. "
            "`0; 4; 8; 12`) to see which depth works best for each backbone.", icon=":material/info:")
else:
    curve["series"] = curve["strategy"] + " · " + curve["features"]
    fig = px.line(curve, x="layer", y="mean", error_y="std", color="series", facet_col="backbone", markers=True,
                  hover_data=["seeds", "capped"], custom_data=["capped"],
                  title=f"{split} {metric} by layer (single-layer runs; ✕ = capped while improving)")
    mark_capped(fig)
    lo, hi = int(curve["layer"].min()), int(curve["layer"].max())
    # whole layers only; one layer gets a window around it rather than an axis from -0.5 to 1
    fig.update_xaxes(tickformat="d", dtick=max(1, -(-(hi - lo) // 12)), range=[lo - 1, hi + 1] if hi - lo < 2 else None)
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(yaxis_title=metric, height=380)
    st.plotly_chart(fig, width="stretch", config=PLOT_CONFIG)

st.subheader("DFF learned layer weights")
weights = views.layer_weights_frame(db, shown)
if weights.empty:
    st.info("No DFF runs among these — train the `dff` strategy to see which layers it learns to use.", icon=":material/info:")
else:
    grid = weights.pivot_table(index="run", columns="layer", values="weight", aggfunc="mean")
    heat, spread_col = st.columns([3, 2])
    fig = px.imshow(grid, aspect="auto", color_continuous_scale="Viridis", labels=dict(color="weight"),
                    zmin=0.0, zmax=float(max(grid.max().max(), 1e-6)), text_auto=".2f" if grid.size <= 400 else False,
                    title="softmax(w) per run and layer (uniform = 1 / number of layers)")
    fig.update_layout(xaxis_title="layer", yaxis_title="", height=max(320, 80 + 30 * len(grid)))
    heat.plotly_chart(fig, width="stretch", config=PLOT_CONFIG)
    spread = compare.weight_spread(weights, by="run")
    spread_col.dataframe(spread, hide_index=True, width="stretch", column_config={
        "max weight": st.column_config.NumberColumn(format="%.3f"),
        "max / uniform": st.column_config.NumberColumn(format="%.2f", help="1 = uniform (averaged), L = one layer"),
        "entropy / max": st.column_config.NumberColumn(format="%.2f", help="1 = uniform, 0 = one layer"),
        "effective layers": st.column_config.NumberColumn(format="%.1f", help="exp(entropy)")})
    spread_col.caption("Did DFF choose layers or average them? max / uniform near 1 means the softmax stayed "
                       "uniform: the run is close to the gated mean of its layers.")
