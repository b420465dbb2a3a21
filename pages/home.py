"""Home: what is stored, what is running, the demo dataset on its own, and a one-click demo study with its
estimated time."""
from __future__ import annotations

import streamlit as st

from jobs import submit
from jobs.demo_estimate import demo_study_estimate
from storage.queue import ACTIVE, list_jobs
from pages.common import PROGRESS_COLUMN, database, format_seconds, plain, reported
from storage import views

db = database()
st.title("DFF Studio")
st.caption("Which frozen vision-language model, which layers and which way of plugging them in make the best "
           "features for micro-video recommendation?")

n = views.counts(db)
cols = st.columns(5)
cols[0].metric("Datasets", n["datasets"])
cols[1].metric("Feature sets", n["feature_sets"])
cols[2].metric("Finished runs", n["runs_done"])
cols[3].metric("Jobs running", n["jobs_running"])
cols[4].metric("Jobs queued", n["jobs_queued"])
demo_box = st.container()  # filled last, above the tables: the plan reads the registry and the stored data

# ------------------------------------------------------------------------------------------ stored data
st.subheader("Datasets")
table = views.dataset_table(db)
if table.empty:
    st.info("No datasets yet — build the demo dataset above (or run the whole demo study), or import one on "
            "the Data page.", icon=":material/info:")
else:
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "density": st.column_config.NumberColumn("density", format="percent", help="interactions / (users × items)")})

st.subheader("Feature sets")
features = views.feature_set_table(db)
if features.empty:
    st.info("No feature sets yet — extract one on the Extract page.", icon=":material/info:")
else:
    st.dataframe(features.drop(columns=["id", "created"]), hide_index=True, width="stretch")

st.subheader("Running and queued jobs")
active = [j for j in list_jobs(db) if j.status in ACTIVE]
if not active:
    st.caption("Nothing is running.")
else:
    frame = views.jobs_frame(active)
    frame["ETA"] = [format_seconds(e) if e is not None else "" for e in frame["eta_s"]]
    st.dataframe(frame[["id", "kind", "what", "status", "progress", "step", "ETA"]], hide_index=True,
                 width="stretch", column_config=PROGRESS_COLUMN)
    st.page_link("pages/jobs.py", label="Watch them on the Jobs page", icon=":material/pending_actions:")

st.subheader("Recent runs")
runs = views.runs_frame(db)
if runs.empty:
    st.info("No finished runs yet — train one on the Train page, or run the demo study.", icon=":material/info:")
else:
    st.dataframe(runs.sort_values("run_id", ascending=False).head(10)[
        ["run_id", "dataset", "study", "backbone", "strategy", "layers", "seed", "test NDCG@10", "test HR@10",
         "epochs"]], hide_index=True, width="stretch")

# ------------------------------------------------------------------------------------------ demo study
def estimate_text(est) -> str:
    """``about 9 min 40 s – 26 min`` and where the numbers come from, one line per step."""
    if not est.steps:
        return ""
    some = any(s.measured for s in est.steps)
    basis = ("measured on this database" if est.measured else "partly measured here, partly from defaults for a "
             "2-core CPU" if some else "from defaults for a 2-core CPU; runs here make it precise")
    steps = "; ".join(f"{s.what} {format_seconds(s.low)}–{format_seconds(s.high)}" for s in est.steps)
    return f"Estimated time: **{format_seconds(est.low)} – {format_seconds(est.high)}** ({basis}): {plain(steps)}."


def demo_dataset() -> None:
    """Build only the demo dataset: what the Data, Train, Explore and Study pages point a newcomer to."""
    st.subheader("Build the demo dataset")
    st.write("About 300 rendered micro-videos with titles, covers and 2,000 users' watch sequences (seeded, no "
             "download), stored as dataset **demo**. Takes about 20 s; nothing is extracted or trained.")
    if views.demo_dataset_exists(db, "demo"):
        st.success("The demo dataset is stored.", icon=":material/check_circle:")
        st.page_link("pages/data.py", label="See it on the Data page", icon=":material/database:")
    elif any(j.kind == "demo" for j in list_jobs(db) if j.status in ACTIVE):
        st.info("Building the demo dataset is queued or running.", icon=":material/autorenew:")
        st.page_link("pages/jobs.py", label="Watch it on the Jobs page", icon=":material/pending_actions:")
    elif st.button("Build the demo dataset", key="demo_dataset", icon=":material/movie:"):
        with reported("could not queue the demo dataset"):
            job = submit.enqueue_demo_dataset(db)
            st.success(f"Queued job #{job}: the demo dataset appears on the Data page in about 20 s.")
            st.page_link("pages/jobs.py", label="Watch it on the Jobs page", icon=":material/pending_actions:")
    st.caption("Same as `python -m dff_core demo`.")


def demo_study() -> None:
    st.subheader("Run the demo study")
    with st.spinner("Checking which backbones are available…"):
        plan, notes = submit.demo_study_plan(db)
        families, _ = submit.backbone_families()
    st.write("Builds the demo dataset if needed, extracts demo features (SmolLM2 over titles, EfficientNet-Lite0 over "
             f"frames) and trains the main strategies ({', '.join(submit.MAIN_STRATEGIES)}) with seeds "
             f"{', '.join(map(str, submit.DEMO_SEEDS))} as study **{submit.DEMO_STUDY}** — all as background jobs, "
             f"each run trained to early stopping (patience {submit.DEMO_SETTINGS['patience']}, cap "
             f"{submit.DEMO_SETTINGS['epochs']} epochs). Then compare them on the Compare page.")
    for note in notes:
        st.caption(f":material/info: {plain(note)}")
    if not plan:
        st.success("The demo study is stored or queued.")
        c1, c2 = st.columns(2)
        c1.page_link("pages/jobs.py", label="Watch the jobs", icon=":material/pending_actions:")
        c2.page_link("pages/compare.py", label="Compare the runs", icon=":material/leaderboard:")
    else:
        what = {"demo": lambda p: "the demo dataset", "extract": lambda p: f"extraction of {plain(p['name'])}",
                "sweep": lambda p: f"a sweep of {len(p.get('runs') or [None]) * len(p['seeds'])} training runs"}
        st.caption("Will queue: " + ", ".join(what[kind](p) for kind, p in plan) + ".")
        st.markdown(estimate_text(demo_study_estimate(db, plan, families)))
        if st.button("Run the demo study", type="primary", key="demo_study"):
            with reported("could not queue the demo study"):
                ids = submit.enqueue_demo_study(db)
                st.success(f"Queued jobs {', '.join('#' + str(i) for i in ids)}. The training jobs appear when "
                           "each sweep starts, after its features exist.")
                st.page_link("pages/jobs.py", label="Watch them on the Jobs page", icon=":material/pending_actions:")
    st.caption("Same as `python -m dff_core demo-study` (`--plan` shows the plan and estimate only).")


with demo_box:
    c_data, c_study = st.columns([1, 2])
    with c_data.container(border=True):
        demo_dataset()
    with c_study.container(border=True):
        demo_study()
