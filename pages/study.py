"""Study: do the paper's three findings hold on my data and backbone? One form queues the study (one sweep);
progress, verdicts, plots and the HTML/CSV export follow from the stored runs. Logic lives in dff_core.study."""
from __future__ import annotations

import streamlit as st

from dff_core.study import plan as study_plan
from dff_core.study import report, verdicts
from jobs import study as study_jobs
from jobs import estimates, submit
from dff_core.estimates import estimate_text
from dff_core.metric_names import METRICS
from pages.common import PLOT_CONFIG, database, empty_state, plain, reported
from dff_core.endings import cap_warning
from pages.train_options import fast_path_settings
from storage import views

db = database()
st.title("Study")
st.caption("Checks the three findings of *Frozen LVLMs for Micro-Video Recommendation* on a dataset: "
           "(1) hidden states beat the caption route, (2) ID embeddings are essential and fusion beats replacement, "
           "(3) intermediate layers beat the last one and DFF beats the best single layer. "
           "Same as `python -m dff_core study`.")

names = views.dataset_names(db)
if not names:
    empty_state("No dataset yet — import one on the Data page (or build the demo from Home).", "pages/data.py",
                "Data page")
    st.stop()

# ------------------------------------------------------------------------------------------------ form
with st.expander("New study", expanded=not study_jobs.list_studies(db)):
    c = st.columns(3)
    dataset = c[0].selectbox("Dataset", names, key="st_dataset")
    usable = views.usable_feature_sets(db, dataset)
    hidden = [fs for fs in usable if fs.kind != "caption"]
    if not hidden:
        st.info("This dataset has no finished hidden-state feature set; extract one on the Extract page first.")
    else:
        fs_name = c[1].selectbox("Hidden-state features", [fs.name for fs in hidden], key=f"st_features_{dataset}")
        cap_options = ["(none)"] + [fs.name for fs in usable if fs.name != fs_name]
        captions = c[2].selectbox("Caption-route features", cap_options, key=f"st_captions_{dataset}",
                                  help="a caption embedding of the same backbone; without it finding 1 is not tested")
        c = st.columns(5)
        seeds_text = c[0].text_input("Seeds", "3", key="st_seeds", help="a count (3 → seeds 1,2,3) or a list 1,2,5")
        points = c[1].number_input("Layer points", 2, 200, 7, key="st_points",
                                   help="single-layer runs spread evenly over the depth; the last layer is always in")
        layers_text = c[2].text_input("Layers", "auto", key="st_layers", help="auto, A-B or i,j,k")
        range_text = c[3].text_input("DFF range", "auto", key="st_range", help="auto = the middle half, or A-B")
        epochs = c[4].number_input("Epochs", 1, 1000, study_plan.DEFAULT_SETTINGS["epochs"], key="st_epochs",
                                   help="the cap; runs end by early stopping (patience "
                                        f"{study_plan.DEFAULT_SETTINGS['patience']})")
        cap_note = cap_warning(int(epochs), study_plan.DEFAULT_SETTINGS["patience"], views.epochs_needed(db, dataset))
        if cap_note:
            st.warning(cap_note, icon=":material/hourglass_bottom:")
        fast = fast_path_settings("st")
        name = st.text_input("Study name", f"study-{dataset}-{fs_name}", key=f"st_name_{dataset}_{fs_name}")
        request, runs = None, []
        with reported("cannot plan this study"):
            request = study_plan.StudyRequest(
                dataset=dataset, features=fs_name, captions=None if captions == "(none)" else captions,
                seeds=submit.parse_seeds(seeds_text, number_is_count=True), layers=study_plan.parse_layer_list(layers_text),
                layer_points=int(points), intermediate=study_plan.parse_range(range_text), epochs=int(epochs),
                name=name, extra_settings=fast)
            runs = study_plan.plan_runs(request, next(fs for fs in hidden if fs.name == fs_name).num_layers)
        if request and runs:
            st.caption(f"**{len(runs) * len(request.seeds)} training runs**: "
                       + ", ".join(r["role"] for r in runs) + f" × {len(request.seeds)} seeds")
            st.caption(estimate_text(estimates.training_cost(
                db, dataset, [r["strategy"] for r in runs for _ in request.seeds],
                {"epochs": request.epochs, **request.extra_settings}, runs=[r for r in runs for _ in request.seeds])))
            if st.button("Queue study", key="st_queue", type="primary", icon=":material/science:"):
                with reported("could not queue the study"):
                    job_id = study_jobs.queue_study(db, request)
                    st.session_state["st_selected"] = request.study
                    st.success(plain(f"queued study {request.study!r} (sweep job {job_id}); its runs start in the "
                                     "background worker"))

# ------------------------------------------------------------------------------------------- a study
studies = study_jobs.list_studies(db)
if not studies:
    st.info("No study yet: fill in the form above and queue one.")
    st.stop()
selected = st.session_state.get("st_selected")
study = st.selectbox("Study", studies, index=studies.index(selected) if selected in studies else 0, key="st_study")
data = study_jobs.load_study(db, study)
p = data.progress
total, done = p.get("total", 0), p.get("done", 0)
if total:
    st.progress(done / total, text=f"{done} of {total} training runs done"
                + "".join(f", {p[s]} {s}" for s in ("running", "queued", "failed", "cancelled", "interrupted") if p.get(s)))
else:
    st.progress(0.0, text=f"sweep {p.get('sweep') or 'queued'}: its training runs are created when it starts")
if p.get("queued") or p.get("running") or p.get("sweep") in ("queued", "running"):
    st.button("Refresh", key="st_refresh", icon=":material/refresh:")
if data.runs.empty:
    st.info("No run of this study has finished yet; verdicts appear as runs finish (progress on the Jobs page).")
    st.stop()
if done < total:
    st.warning("The study is still running: these verdicts use the runs finished so far.")

metric = st.selectbox("Metric", list(METRICS), key="st_metric")
findings = verdicts.evaluate(data, metric)
# Streamlit's own icon font and badges: emoji need a colour-emoji font, which many Linux browsers lack
ICON = {verdicts.SUPPORTED: ":green-badge[:material/check_circle: supported]",
        verdicts.CONTRADICTED: ":red-badge[:material/cancel: contradicted]",
        verdicts.INCONCLUSIVE: ":orange-badge[:material/help: inconclusive]",
        verdicts.UNDER_TRAINED: ":violet-badge[:material/hourglass_bottom: under-trained]"}
capped = report.capped_summary(data)
if capped:
    st.warning(capped, icon=":material/hourglass_bottom:")
for f in findings:
    count = (f" :violet-badge[{f.under_trained} run{'s' if f.under_trained != 1 else ''} capped while improving]"
             if f.verdict == verdicts.UNDER_TRAINED else "")
    st.subheader(f"Finding {f.number}: {f.title} {ICON[f.verdict]}{count}")
    st.dataframe(verdicts.verdict_frame([f])[["part", "claim", "a", "mean_a", "std_a", "b", "mean_b", "std_b", "diff",
                                              "n", "p", "p_perm", "verdict", "under_trained", "reason"]],
                 hide_index=True, width="stretch")
    for note in f.notes:
        st.caption(note)

for title, fig in report.figures(data, metric).items():
    st.plotly_chart(fig, config=PLOT_CONFIG, key=f"st_fig_{title}")
st.subheader("Run types")
st.dataframe(verdicts.role_table(data, metric), hide_index=True, width="stretch")

d = st.columns(3)
d[0].download_button("Download report (HTML)", report.render_html(data, metric, findings=findings).encode(),
                     f"{study}.html", "text/html", key="st_dl_html", icon=":material/download:")
d[1].download_button("Download verdicts (CSV)", report.verdicts_csv(findings).encode(), f"{study}-verdicts.csv",
                     "text/csv", key="st_dl_verdicts", icon=":material/download:")
d[2].download_button("Download runs (CSV)", report.runs_csv(data).encode(), f"{study}-runs.csv", "text/csv",
                     key="st_dl_runs", icon=":material/download:")
