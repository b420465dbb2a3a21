"""The simple charts of the pages a visitor opens first (Data, Train), drawn with Vega-Lite (Altair) instead of plotly.

Why: a page's first chart makes the browser fetch and compile its charting library. Streamlit's plotly chunk is
4.7 MB of JavaScript, its Vega-Lite one 0.8 MB; on a fresh server the Train page (one bar chart) was ready 2.7-3.0 s
after the click with plotly, most of it the browser compiling plotly.js after the script had finished
(Chromium timeline, 2-core machine). Compare keeps plotly for its error bars, hatching and heatmap.
Contract: each function returns an ``alt.Chart`` for ``st.altair_chart(chart, width="stretch")``; no user text
goes into a chart (axes are numbers and fixed labels).
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

ACCENT, MUTED = "#e4572e", "#9fb3c8"


def layer_usefulness(scores: pd.DataFrame, chosen: list[int]) -> alt.LayerChart:
    """Bars of each layer's lift over chance (chosen layers in the accent colour) and a dotted line at 1, named
    in the axis title; layer labels thin out rather than overlap on deep backbones."""
    frame = scores[["layer", "lift", "score", "chance"]].copy()
    frame["layer"] = frame["layer"].astype(int)
    frame["chosen"] = np.where(frame["layer"].isin([int(c) for c in chosen]), "chosen", "not chosen")
    bars = alt.Chart(frame).mark_bar().encode(
        x=alt.X("layer:O", title="layer (0 = embeddings)", axis=alt.Axis(labelAngle=0, labelOverlap="greedy")),
        y=alt.Y("lift:Q", title="lift (dotted line: 1 = chance)"),
        color=alt.Color("chosen:N", scale=alt.Scale(domain=["chosen", "not chosen"], range=[ACCENT, MUTED]),
                        legend=None),
        tooltip=[alt.Tooltip("layer:O"), alt.Tooltip("lift:Q", format=".2f"),
                 alt.Tooltip("score:Q", title="neighbours co-watched", format=".1%"),
                 alt.Tooltip("chance:Q", format=".1%")])
    # the chance line is named in the axis title: a text label on it sat over the first bars
    chance = alt.Chart(pd.DataFrame({"y": [1.0]})).mark_rule(strokeDash=[4, 4], color="#555").encode(y="y:Q")
    return (bars + chance).properties(
        height=300, title="Layer usefulness: co-watch agreement of nearest neighbours (lift over chance)")


def sequence_lengths(lengths: np.ndarray) -> alt.Chart:
    """Histogram of interactions per user (at most 60 bins, one per length when the range is short)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    bins = min(60, max(5, int(lengths.max() - lengths.min() + 1)))
    return alt.Chart(pd.DataFrame({"length": lengths})).mark_bar(color=ACCENT).encode(
        x=alt.X("length:Q", bin=alt.Bin(maxbins=bins), title="interactions per user", axis=alt.Axis(format="d")),
        y=alt.Y("count():Q", title="users"),
        tooltip=[alt.Tooltip("length:Q", bin=alt.Bin(maxbins=bins), title="interactions"),
                 alt.Tooltip("count():Q", title="users")],
    ).properties(height=340, title="Sequence length")


def popularity(pop: pd.DataFrame) -> alt.Chart:
    """Interactions by item rank on a log scale (the long tail); items without interactions are left out."""
    frame = pop.loc[pop["interactions"] > 0, ["rank", "interactions", "cumulative share"]]
    return alt.Chart(frame).mark_line(color=ACCENT).encode(
        x=alt.X("rank:Q", title="item rank (1 = most popular)"),
        y=alt.Y("interactions:Q", scale=alt.Scale(type="log"), title="interactions (log)"),
        tooltip=[alt.Tooltip("rank:Q"), alt.Tooltip("interactions:Q"),
                 alt.Tooltip("cumulative share:Q", format=".1%")],
    ).properties(height=340, title="Item popularity (long tail)")


def training_curves(curves: pd.DataFrame, run_id: int) -> tuple[alt.Chart, alt.Chart]:
    """A training job's loss and validation curves (``views.run_curves``: epoch, series, value), whole-epoch ticks.

    The Jobs page redraws them every refresh while a run trains, and visitors come to that page while the
    machine is busy training: Vega-Lite keeps plotly.js (4.7 MB to compile in the browser) off the page, and
    building the two specs costs the server ~10 ms each against ~40 ms for ``px.line``."""
    last = int(curves["epoch"].max()) if len(curves) else 1
    epochs = alt.X("epoch:Q", title="epoch", scale=alt.Scale(domain=[1, max(2, last)]),
                   axis=alt.Axis(format="d", tickMinStep=max(1, -(-last // 10))))  # whole epochs, at most ~10 ticks
    loss = curves[curves["series"] == "train loss"]
    val = curves[curves["series"] != "train loss"]
    left = alt.Chart(loss).mark_line(point=True, color=ACCENT).encode(
        x=epochs, y=alt.Y("value:Q", title="loss", scale=alt.Scale(zero=False)),
        tooltip=[alt.Tooltip("epoch:Q"), alt.Tooltip("value:Q", title="loss", format=".4f")],
    ).properties(height=300, title=f"Run #{int(run_id)}: training loss")
    right = alt.Chart(val).mark_line(point=True).encode(
        x=epochs, y=alt.Y("value:Q", title="metric", scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("epoch:Q"), alt.Tooltip("series:N"), alt.Tooltip("value:Q", format=".4f")],
    ).properties(height=300, title="Validation")
    return left, right
