"""The Jobs page's live part stays light while the machine is busy: one open of the database file per refresh,
staleness judged once, only the listed jobs' runs read, Vega-Lite curves (no plotly.js), and a refresh interval
that follows how long a refresh takes, so that refreshes never run back to back (the load test's Jobs page ran
for over 60 s without a pause). Counts and values only; the timings are bench/bench_load.py's."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from data_helpers import write_generic
from jobs.datasets import import_generic
from pages.common import REFRESH_LEVELS, refresh_interval
from storage import Database, queue
from storage.runs import create_run, log_metrics

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "jobs.py")


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    monkeypatch.setenv("DFF_WORKER", "0")


@pytest.fixture
def busy_db(tmp_path, monkeypatch):
    """A training job running under this (live) process with two epochs of curves, runs of another study the page
    has no reason to read, and a queued sweep with one child."""
    db = Database(tmp_path / "jobs.duckdb")
    ds = import_generic(db, "d", *write_generic(tmp_path / "d"))
    others = [create_run(db, ds.id, "id", {"epochs": 3}, seed=s, study="other").id for s in (1, 2, 3)]
    train = queue.enqueue(db, "train", {"dataset": "d", "strategy": "id", "seed": 7})
    assert queue.claim_next(db, os.getpid()).id == train          # owned by a live process: not stale
    run = create_run(db, ds.id, "id", {"epochs": 4}, seed=7, job_id=train)
    for epoch in (1, 2):
        log_metrics(db, run.id, epoch, "train", {"loss": 1.0 / epoch})
        log_metrics(db, run.id, epoch, "val", {"NDCG@10": 0.1 * epoch, "HR@10": 0.2 * epoch})
    queue.report(db, train, progress=0.5, step="epoch 2/4", result_update={"run_id": run.id})
    sweep = queue.enqueue(db, "sweep", {"study": "s", "strategies": ["id"], "seeds": [1]}, group="s")
    queue.enqueue(db, "train", {"dataset": "d", "strategy": "id", "seed": 1}, group="s", parent_id=sweep)
    monkeypatch.setenv("DFF_DB", str(db.path))
    return db, {"train": train, "sweep": sweep, "run": run.id, "others": others}


class Counts:
    """Storage calls of the page's script thread: real opens of the file (a connection made while this thread
    holds no open anchor), sessions, staleness checks and the runs read for the outcomes column."""

    def __init__(self, monkeypatch):
        import storage.views as views
        from storage.db import Database as Db

        self.opens = self.sessions = self.stale_checks = 0
        self.runs_read: list[list[int]] = []
        connect, session, stale, list_runs = Db._do_connect, Db.session, queue.mark_stale, views.list_runs

        def counted_connect(db, *args):
            hold = getattr(db._held, "hold", None)
            if hold is None or hold._anchor is None:
                self.opens += 1
            return connect(db, *args)

        def counted_session(db):
            self.sessions += 1
            return session(db)

        def counted_stale(*args, **kwargs):
            self.stale_checks += 1
            return stale(*args, **kwargs)

        def counted_runs(*args, **kwargs):
            runs = list_runs(*args, **kwargs)
            self.runs_read.append([r.id for r in runs])
            return runs

        monkeypatch.setattr(Db, "_do_connect", counted_connect)
        monkeypatch.setattr(Db, "session", counted_session)
        monkeypatch.setattr(queue, "mark_stale", counted_stale)
        monkeypatch.setattr(views, "list_runs", counted_runs)

    def reset(self) -> None:
        self.opens = self.sessions = self.stale_checks = 0
        self.runs_read = []


def _page(pick: int) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.session_state["jobs_pick"] = pick
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_refresh_opens_the_database_file_once_and_judges_staleness_once(busy_db, monkeypatch):
    db, ids = busy_db
    counts = Counts(monkeypatch)                       # before the page makes its handle (it binds the connect)
    at = _page(ids["train"])
    counts.reset()
    at.run()                                           # one refresh of the page (the page file alone: no app.py hold)
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"Job #{ids['train']} · train · running" in m.value for m in at.markdown)
    assert counts.opens == 1                           # was 4: every storage session opened the file again
    assert counts.sessions >= 4                        # staleness, jobs, outcomes, curves: all inside that one open
    assert counts.stale_checks == 1
    assert counts.runs_read == [[ids["run"]]]          # not the other study's runs
    assert len(at.get("vega_lite_chart")) == 2 and len(at.get("plotly_chart")) == 0   # loss and validation curves


def test_a_sweeps_refresh_reads_its_children_without_a_second_staleness_check(busy_db, monkeypatch):
    db, ids = busy_db
    counts = Counts(monkeypatch)                       # before the page makes its handle (it binds the connect)
    at = _page(ids["sweep"])
    counts.reset()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("0 of 1 training jobs done" in c.value for c in at.caption)
    assert (counts.opens, counts.stale_checks) == (1, 1)


def test_a_slow_refresh_slows_the_page_down_and_says_so(busy_db, monkeypatch):
    """A refresh held up 0.6 s (here: its staleness check; under load: CPU and the file lock) takes at least that
    long, so the next interval is at least 4 x 0.6 s: 4 s or more, and the caption names it."""
    import time

    db, ids = busy_db
    stale = queue.mark_stale

    def slow_stale(*args, **kwargs):
        time.sleep(0.6)
        return stale(*args, **kwargs)

    monkeypatch.setattr(queue, "mark_stale", slow_stale)
    at = _page(ids["train"])
    interval = at.session_state["jobs_refresh_s"]
    assert interval in REFRESH_LEVELS and interval >= 4.0
    assert at.session_state["jobs_tick_s"] >= 0.6
    assert any(f"refreshes itself every {interval:g} s (slower while the machine is busy" in c.value
               for c in at.caption)


@pytest.mark.parametrize("current", REFRESH_LEVELS)
@pytest.mark.parametrize("tick", [0.0, 0.05, 0.3, 0.5, 0.6, 1.1, 2.5, 4.5, 7.9, 20.0])
def test_the_interval_is_at_least_four_refreshes_long(current, tick):
    new = refresh_interval(current, tick)
    assert new in REFRESH_LEVELS
    assert new >= min(4 * tick, REFRESH_LEVELS[-1])


def test_the_interval_steps_up_at_once_and_down_one_level_with_hysteresis():
    assert refresh_interval(2.0, 0.1) == 2.0
    assert refresh_interval(2.0, 0.6) == 4.0           # 4 x 0.6 > 2
    assert refresh_interval(2.0, 3.0) == 16.0          # several levels at once
    assert refresh_interval(2.0, 100.0) == 30.0        # the slowest level
    assert refresh_interval(8.0, 1.1) == 8.0           # 8 x 1.1 > 4: stays
    assert refresh_interval(8.0, 0.5) == 4.0           # one level down, not straight to 2
    assert refresh_interval(4.0, 0.3) == 4.0           # 0.3 would fit 2 s, but 8 x 0.3 > 2: no flapping
    assert refresh_interval(4.0, 0.25) == 2.0
    assert refresh_interval(30.0, 0.0) == 16.0
