"""Compare: leaderboard over seeds, strategy bars, metric-by-layer curves, DFF layer weights, cold vs warm."""
from __future__ import annotations

import plotly.express as px
import streamlit as st

from dff_core import compare
from dff_core.metric_names import METRICS
from pages.common import PLOT_CONFIG, database, empty_state, reported
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
    st.warning("No run matches these filters — clear some of them.")
    st.stop()
if n_capped and not hide_capped:
    st.warning(f"{n_capped} of these runs hit their epoch cap while still improving (marked ⚠ in the leaderboard, "
               "✕ in the plots): their numbers are of under-trained models. Train them to early stopping with a "
               "higher epoch cap, or hide them.", icon=":material/hourglass_bottom:")

ids = shown["run_id"].astype(int).tolist()
st.caption(f"{len(shown)} finished runs match: " + ", ".join(f"#{i}" for i in ids[-30:])
           + (" …" if len(ids) > 30 else ""))

# ---------------------------------------------------------------------------------------- leaderboard
board = compare.leaderboard(shown, metric, split)
st.subheader(f"Leaderboard · {split} {metric}, mean ± std over seeds")
st.dataframe(board.drop(columns=["mean", "std", "capped"]), hide_index=True, width="stretch",
             column_config={"seeds": st.column_config.NumberColumn("seeds", help="runs averaged"),
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
    pop = shown["popularity test NDCG@10"].dropna()
    if split == "test" and metric == "NDCG@10" and len(pop):
        fig.add_hline(y=float(pop.mean()), line_dash="dot", annotation_text="popularity baseline")
    fig.update_layout(yaxis_title=metric, height=380, legend_title_text="backbone")
    st.plotly_chart(fig, width="stretch", config=PLOT_CONFIG)

with right:
    buckets = compare.bucket_frame(shown, metric)
    if buckets.empty:
        st.info("No cold/warm breakdown stored for these runs.", icon=":material/info:")
    else:
        buckets["label"] = buckets["strategy"] + " · " + buckets["backbone"]
        fig = px.bar(buckets, x="label", y="mean", error_y="std", color="bucket", barmode="group",
                     hover_data=["users"], color_discrete_map={"cold": "#4c78a8", "warm": "#f58518"},
                     title=f"Cold vs warm test targets · {metric}")
        fig.update_layout(xaxis_title="strategy · backbone", yaxis_title=metric, height=380)
        st.plotly_chart(fig, width="stretch", config=PLOT_CONFIG)
        st.caption("Cold: the test item was seen rarely in training (below the cold threshold); warm: the rest.")

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
