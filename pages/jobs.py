"""Jobs: every background job with live progress, ETA, loss/validation curves, log tail, cancel/retry/resume.

The live part refreshes itself (a fragment with ``run_every``). Each refresh opens the database file once
(``held_open`` around it: 5-7 storage sessions share that open), judges staleness once, and reads only the listed
jobs' runs; its interval follows how long a refresh takes (``pages.common.refresh_interval``: 2 s on a quiet
machine, slower while the machine is busy), so the page rests between refreshes instead of running back to back.
"""
from __future__ import annotations

import time

import streamlit as st

from storage import queue
from pages import charts
from pages.common import (PROGRESS_COLUMN, REFRESH_LEVELS, STATUS_ICON, database, empty_state, format_seconds,
                          plain, refresh_interval, show_error, user_errors)
from storage import views

REFRESH_S = REFRESH_LEVELS[0]
db = database()
interval = float(st.session_state.get("jobs_refresh_s", REFRESH_S))
st.title("Jobs")
busy = (f" (slower while the machine is busy: the last refresh took {st.session_state['jobs_tick_s']:.1f} s)"
        if interval > REFRESH_S and "jobs_tick_s" in st.session_state else "")
st.caption(f"Background work (extraction, training, sweeps). This page refreshes itself every {interval:g} s"
           f"{busy}; jobs keep running when you close it.")

statuses = st.multiselect("Show", list(queue.ACTIVE + queue.FINAL), default=[], key="jobs_status",
                          placeholder="all statuses")


def _control(job) -> None:
    """Cancel / retry / resume buttons for one job; the queue refuses what does not fit the job's state."""
    c1, c2, c3 = st.columns(3)
    message = None
    try:
        if c1.button("Cancel", key=f"cancel_{job.id}", disabled=job.status not in queue.ACTIVE,
                     help="graceful: keeps finished epochs / stored items", width="stretch"):
            message = f"job #{job.id}: {queue.request_cancel(db, job.id)}"
        if c2.button("Retry", key=f"retry_{job.id}", disabled=job.status not in ("failed", "cancelled", "interrupted"),
                     help="run it again; it picks up what was already stored", width="stretch"):
            queue.retry(db, job.id)
            message = f"job #{job.id} queued again"
        if c3.button("Resume", key=f"resume_{job.id}", disabled=job.status not in ("interrupted", "cancelled", "failed"),
                     help="continue from the last checkpoint (training) or the stored items (extraction)",
                     width="stretch"):
            queue.resume(db, job.id)
            message = f"job #{job.id} queued to resume"
        if job.group_name and st.button(f"Cancel all of “{plain(job.group_name)}”", key=f"cancel_group_{job.id}",
                                        help="every queued, running or interrupted job of this study or sweep, "
                                             "in one step"):
            counts = queue.cancel_group(db, job.group_name)
            message = (f"{job.group_name}: {counts['cancelled']} job(s) cancelled, "
                       f"{counts['stopping']} running job(s) stopping")
    except user_errors() as exc:
        show_error(exc)
    if message:  # show the new state at once; the message survives the rerun
        st.session_state["jobs_flash"] = message
        st.rerun()


def _details(job, outcome: dict) -> None:
    capped = bool(outcome.get("capped"))
    icon = ":material/warning:" if capped else STATUS_ICON.get(job.status, "")
    status = f"{job.status} · capped while improving" if capped else job.status
    st.markdown(f"#### {icon} Job #{job.id} · {job.kind} · {status}")
    st.caption(plain(views.job_label(job) + (f" · study {job.group_name}" if job.group_name else "")))
    eta = f" · ETA {format_seconds(job.eta_seconds)}" if job.status == "running" and job.eta_seconds else ""
    st.progress(min(1.0, max(0.0, float(job.progress or 0))),
                text=f"{100 * float(job.progress or 0):.0f}% · {views.job_step_text(job, outcome)}{eta}")
    if capped:  # the most important line of such a job: in full, above the log, in the dashboard's words
        st.warning(f"Run #{(job.result or {}).get('run_id')} hit its epoch cap ({outcome.get('epoch_cap')} epochs) "
                   f"while still improving (best epoch {outcome.get('best_epoch')}): its numbers are those of an "
                   "under-trained model and cannot decide a comparison. Train it again with a higher **Epochs** cap "
                   "on the Train page; early stopping then ends it when it has converged.",
                   icon=":material/hourglass_bottom:")
    if job.error:
        st.error(plain(job.error), icon=":material/block:")
    _control(job)
    run_id = (job.result or {}).get("run_id")
    if job.kind == "train" and run_id:
        curves = views.run_curves(db, int(run_id))
        if curves.empty:
            st.caption("Curves appear after the first epoch.")
        else:
            left, right = st.columns(2)
            loss_chart, val_chart = charts.training_curves(curves, int(run_id))
            left.altair_chart(loss_chart, width="stretch", key=f"loss_{job.id}")
            right.altair_chart(val_chart, width="stretch", key=f"val_{job.id}")
        if job.status == "done":
            st.page_link("pages/compare.py", label=f"Run #{run_id} is on the Compare page", icon=":material/leaderboard:")
    if job.kind == "sweep":
        children = queue.list_jobs(db, group=job.group_name, fresh=False)  # staleness was judged this refresh
        children = [c for c in children if c.parent_id == job.id]
        if children:
            done = sum(c.status == "done" for c in children)
            st.caption(f"{done} of {len(children)} training jobs done")
    st.caption("Log (last lines)")
    st.code(job.log or "(empty)", language=None, height=200, wrap_lines=True)


@st.fragment(run_every=interval)
def live() -> None:
    """One refresh: the page's storage reads share one open of the file; then the next interval is set."""
    started = time.perf_counter()
    with db.held_open():
        _refresh()
    _pace(time.perf_counter() - started)


def _pace(tick_s: float) -> None:
    """Keep the refresh interval at least 4 times a refresh's time (``refresh_interval``); a change takes a full
    run, since the browser learns a fragment's interval only when the page registers the fragment."""
    st.session_state["jobs_tick_s"] = tick_s
    current = float(st.session_state.get("jobs_refresh_s", REFRESH_S))
    new = refresh_interval(current, tick_s)
    if new != current:
        st.session_state["jobs_refresh_s"] = new
        st.rerun()


def _refresh() -> None:
    if "jobs_flash" in st.session_state:
        st.toast(st.session_state.pop("jobs_flash"), icon=":material/check_circle:")
    jobs = queue.list_jobs(db, limit=500)
    if statuses:
        jobs = [j for j in jobs if j.status in statuses]
    if not jobs:
        empty_state("No jobs yet — launch training on the Train page, extraction on the Extract page, or the demo "
                    "study from Home.", "pages/train.py", "Train page")
        return
    frame = views.jobs_frame(jobs)
    outcomes = views.job_outcomes(db, jobs)
    frame["ETA"] = [format_seconds(e) if e is not None else "" for e in frame["eta_s"]]
    frame["run"] = ["" if r is None or r != r else f"#{int(r)}" for r in frame["run"]]  # no raw "None"
    frame["step"] = [views.job_step_text(j, outcomes.get(j.id, {})) for j in jobs]
    frame["status"] = [f"{s} ⚠ capped" if outcomes.get(i, {}).get("capped") else s
                       for i, s in zip(frame["id"], frame["status"])]
    counts = frame["status"].value_counts()
    st.caption(" · ".join(f"{STATUS_ICON.get(s.split(' ')[0], '')} {counts[s]} {s}" for s in counts.index))
    optional = [c for c in ("ETA", "study", "run", "error") if frame[c].fillna("").astype(str).ne("").any()]
    st.dataframe(frame[["id", "kind", "what", "status", "progress", "step"] + optional],  # empty columns left out
                 hide_index=True, width="stretch", height=min(400, 38 + 35 * len(frame)),
                 column_config={**PROGRESS_COLUMN, "id": st.column_config.NumberColumn("id", width=50),
                                "kind": st.column_config.TextColumn("kind", width=70),
                                "what": st.column_config.TextColumn("what", width="medium"),
                                "step": st.column_config.TextColumn("step", width="medium"),
                                "status": st.column_config.TextColumn(
                                    "status", help="⚠ capped: the run hit its epoch cap while still improving")})
    ids = [j.id for j in jobs]
    by_id = {j.id: j for j in jobs}
    running = [j.id for j in jobs if j.status == "running"]
    current = st.session_state.get("jobs_pick")
    default = current if current in by_id else (running[0] if running else ids[0])
    chosen = st.selectbox("Job", ids, index=ids.index(default), key="jobs_pick",
                          # no status in the option text: the open dropdown keeps the text it was drawn with, so a
                          # live status there went stale ("running" beside a finished job); the heading shows it
                          format_func=lambda i: f"#{i} {by_id[i].kind}: {views.job_label(by_id[i])}")
    _details(by_id[chosen], outcomes.get(chosen, {}))


live()
