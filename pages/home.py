"""Home: what is stored, what is running, and a one-click demo study."""
from __future__ import annotations

import streamlit as st

from jobs.queue import ACTIVE, list_jobs
from pages import queries as q
from pages.common import database, dataset_table, reported

db = database()
st.title("DFF Studio")
st.caption("Which frozen vision-language model, which layers and which way of plugging them in make the best "
           "features for micro-video recommendation?")

n = q.counts(db)
cols = st.columns(5)
cols[0].metric("Datasets", n["datasets"])
cols[1].metric("Feature sets", n["feature_sets"])
cols[2].metric("Finished runs", n["runs_done"])
cols[3].metric("Jobs running", n["jobs_running"])
cols[4].metric("Jobs queued", n["jobs_queued"])

table = dataset_table(db)
st.subheader("Datasets")
if table.empty:
    st.info("No datasets yet — build the demo with `python -m dff_core demo` (or the button below), or import one "
            "on the Data page.")
else:
    st.dataframe(table, hide_index=True, width="stretch")

st.subheader("Feature sets")
features = q.feature_set_table(db)
if features.empty:
    st.info("No feature sets yet — extract one on the Extract page.")
else:
    st.dataframe(features, hide_index=True, width="stretch")

st.subheader("Running and queued jobs")
active = [j for j in list_jobs(db) if j.status in ACTIVE]
if not active:
    st.caption("Nothing is running.")
else:
    st.dataframe(q.jobs_frame(active)[["id", "kind", "what", "status", "progress", "step", "ETA"]],
                 hide_index=True, width="stretch",
                 column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)})
    st.page_link("pages/jobs.py", label="Watch them on the Jobs page", icon="⏱️")

st.subheader("Recent runs")
runs = q.runs_frame(db)
if runs.empty:
    st.info("No finished runs yet — train one on the Train page.")
else:
    st.dataframe(runs.sort_values("run_id", ascending=False).head(10)[
        ["run_id", "dataset", "backbone", "strategy", "layers", "seed", "test NDCG@10", "test HR@10", "epochs"]],
        hide_index=True, width="stretch")

st.subheader("Run the demo study")
plan = q.demo_study_jobs(db)
st.write("Builds the demo dataset, extracts smollm2 title features and trains the main strategies "
         f"({', '.join(q.MAIN_STRATEGIES)}) as study **{q.DEMO_STUDY}** — all as background jobs.")
if not plan:
    st.success("The demo study is already stored or queued — see the Jobs and Compare pages.")
else:
    st.caption("Will queue: " + ", ".join(kind for kind, _ in plan))
    if st.button("Run the demo study", type="primary", key="demo_study"):
        with reported("could not queue the demo study"):
            ids = q.enqueue_demo_study(db)
            st.success(f"Queued jobs {', '.join('#' + str(i) for i in ids)}. The train jobs are created by the sweep "
                       "when it runs, after the feature set exists.")
            st.page_link("pages/jobs.py", label="Watch them on the Jobs page", icon="⏱️")
