"""Load test: jobs and runs never lie while the dashboard is busy.

    nice -n 19 python bench/bench_load.py [--duration 600] [--sessions 5] [--jobs 8] [--hold 40] [--keep DIR]

What it does, on a fresh database with the demo dataset and a synthetic 6-layer feature set:

* one dashboard (``serve.py``, as ``python3 dev.py app`` starts it) and **2 job workers** (the one the dashboard
  starts, and a second ``python -m jobs.worker`` on the same database, so claims race);
* **>= 8 short training jobs** (id, gate, dff in turn; topped up while the queue runs dry before the end) and
  **one extraction** (SmolLM2's built-in weights over the demo titles);
* **5 headless Chromium sessions** cycling through every page for ``--duration`` seconds;
* **one page run holding the database** ``--hold`` seconds: a sixth visit opens the Jobs page with ``?hold=...``,
  and the server (started by this file's ``--serve`` mode, which is ``serve.py`` plus that one hook) sleeps in
  the page run right after its first storage session, inside ``Database.held_open``, making no storage call;
* a **kill -9 of one training runner** (what the OOM killer does) part-way, then ``resume`` of its job.

It prints: jobs finished; **false interruptions** (a job seen ``interrupted`` while its owner process was alive,
or one that went on after being marked so: must be 0); **epoch rows lost / duplicated** (each finished run's
train and validation rows against epochs 1..its epochs run); **runs or feature sets left running without a
process** (seen ``running`` while their job had ended, or at the end with no live job); **page loads failed**
(timed out, or a Streamlit exception on the page); the **p95 page time**. Bounded: after ``--duration`` the
jobs get at most ``--drain`` seconds to finish, then what is left is cancelled. Numbers only; on a shared
2-core machine they say how the system behaves under load, not how fast a quiet one is.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "browser")]

PAGES = ["", "data", "extract", "train", "jobs", "compare", "explore", "study"]
SETTINGS = {"epochs": 12, "patience": 0, "hidden": 32, "num_threads": 1}
STRATEGIES = ("id", "gate", "dff")
MONITOR_S = 2.0


# ------------------------------------------------------------------------------------------ the server side

def install_hold_hook(seconds: float) -> None:
    """In the dashboard process: a page run whose URL carries ``hold=TOKEN`` (each token once) sleeps
    ``seconds`` after its first storage session, inside the page's ``held_open``, with no storage call."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from storage.db import Database

    original, used = Database.session, set()
    lock = threading.Lock()

    def token() -> str | None:
        ctx = get_script_run_ctx(suppress_warning=True)
        query = urllib.parse.parse_qs(getattr(ctx, "query_string", "") or "")
        return (query.get("hold") or [None])[0]

    @contextmanager
    def session(self):
        with original(self) as conn:
            yield conn
        held, mark = getattr(self._held, "hold", None), token()
        if held is None or not mark:
            return
        with lock:
            if mark in used:
                return
            used.add(mark)
        time.sleep(seconds)

    Database.session = session


def serve(argv: list[str], hold_s: float) -> int:
    """``serve.py`` with the hold hook installed first."""
    import serve as launcher

    install_hold_hook(hold_s)
    return launcher.main(argv)


# ------------------------------------------------------------------------------------------ the bench side

def prepare(folder: Path) -> Path:
    """A database with the demo dataset and the synthetic feature set ``demo-topics``."""
    from browser_helpers import add_topic_features
    from jobs.datasets import ensure_demo
    from storage import Database

    db = Database(folder / "load.duckdb")
    ensure_demo(db)
    add_topic_features(db)
    return db.path


def start_dashboard(db_path: Path, hold_s: float) -> tuple[subprocess.Popen, str]:
    """This file's ``--serve`` mode on a free port, in its own process group; returns (process, base URL)."""
    from browser_helpers import SERVER_START_TIMEOUT_S, _free_port, _server_env

    port = _free_port()
    log = open(db_path.with_name("dashboard.log"), "wb")
    env = dict(_server_env(db_path), DFF_WORKER="1", DFF_WORKERS="1")
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", "--hold", str(hold_s), "--",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--server.runOnSave", "false"],
        cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, base
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the dashboard did not start; see {db_path.with_name('dashboard.log')}")


def queue_jobs(db, count: int, first: int, features: str) -> list[int]:
    """``count`` training jobs through the submit validator (strategies in turn, seeds from ``first``)."""
    from jobs.submit import enqueue_train

    out = []
    for i in range(count):
        strategy = STRATEGIES[(first + i) % len(STRATEGIES)]
        out.append(enqueue_train(db, "demo", strategy, features if strategy != "id" else None, None, SETTINGS,
                                 seed=first + i, study="load"))
    return out


class Monitor(threading.Thread):
    """Reads jobs, runs and feature sets every ``MONITOR_S`` (plain SELECTs: it never marks anything) and notes
    every lie it sees: an ``interrupted`` job whose owner lives, a job that moves on after ``interrupted``
    without a resume, a run or feature set ``running`` while its job has ended."""

    def __init__(self, db_path: Path):
        super().__init__(daemon=True)
        from storage import Database

        self.db = Database(db_path)
        self.stop = threading.Event()
        self.false_interruptions: dict[int, str] = {}
        self.orphans: dict[str, str] = {}
        self.interrupted_seen: set[int] = set()
        self.resumed: set[int] = set()     # jobs this bench resumed on purpose
        self.errors = 0

    def rows(self, sql: str) -> list:
        import sqlalchemy as sa

        with self.db.session() as conn:
            return list(conn.execute(sa.text(sql)))

    def look(self) -> None:
        from storage.owners import alive

        jobs = {r.id: r for r in self.rows("SELECT id, kind, status, owner FROM jobs")}
        for j in jobs.values():
            if j.status == "interrupted":
                self.interrupted_seen.add(j.id)
                if alive(j.owner):
                    self.false_interruptions[j.id] = f"interrupted while its owner {j.owner} runs"
            elif j.id in self.interrupted_seen and j.id not in self.resumed and j.status in ("running", "done"):
                self.false_interruptions[j.id] = f"marked interrupted, then went on to {j.status}"
        final = ("done", "failed", "cancelled", "interrupted")
        for r in self.rows("SELECT id, status, job_id FROM runs WHERE status = 'running'"):
            if r.job_id in jobs and jobs[r.job_id].status in final:
                self.orphans[f"run {r.id}"] = f"running while job {r.job_id} is {jobs[r.job_id].status}"
        for f in self.rows("SELECT id, name, status, job_id FROM feature_sets WHERE status = 'running'"):
            if f.job_id in jobs and jobs[f.job_id].status in final:
                self.orphans[f"feature set {f.name}"] = f"running while job {f.job_id} is {jobs[f.job_id].status}"

    def run(self) -> None:
        while not self.stop.wait(MONITOR_S):
            try:
                self.look()
            except Exception:  # a busy file: the next look comes soon
                self.errors += 1


class Session(threading.Thread):
    """One headless Chromium session (its own Playwright and browser) cycling through every page."""

    def __init__(self, base: str, index: int, until: float):
        super().__init__(daemon=True)
        self.base, self.index, self.until = base, index, until
        self.times: list[float] = []
        self.by_page: dict[str, list[float]] = {}
        self.failures: list[str] = []

    def run(self) -> None:
        from playwright.sync_api import sync_playwright

        from browser_helpers import chromium_path, open_page

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path(),
                                         args=["--no-sandbox", "--disable-dev-shm-usage"])
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            i = self.index
            while time.monotonic() < self.until:
                slug = PAGES[i % len(PAGES)]
                i += 1
                try:
                    seconds = open_page(page, self.base, slug)
                    errors = page.locator('[data-testid="stException"]')
                    if errors.count():
                        self.failures.append(f"/{slug}: {errors.first.inner_text()[:200]}")
                    else:
                        self.times.append(seconds)
                        self.by_page.setdefault(slug or "home", []).append(seconds)
                except Exception as exc:
                    self.failures.append(f"/{slug}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            browser.close()


def hold_visit(base: str, out: dict) -> None:
    """The one page run that holds the database: the Jobs page with ``?hold=1``."""
    from playwright.sync_api import sync_playwright

    from browser_helpers import chromium_path, open_page

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_context().new_page()
        page.set_default_timeout(180_000)
        t0 = time.monotonic()
        try:
            open_page(page, base, "jobs?hold=1")
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        out["seconds"] = time.monotonic() - t0
        browser.close()


def kill_one_runner(db, workers: set[int], monitor: Monitor) -> dict:
    """SIGKILL the runner of a training job that has stored at least 2 epochs; then, once its worker has reaped
    it, note the job's and its run's status and resume the job."""
    import sqlalchemy as sa

    from storage import queue

    with db.session() as conn:
        rows = list(conn.execute(sa.text(
            "SELECT j.id, j.worker_pid, r.id AS run_id FROM jobs j JOIN runs r ON r.job_id = j.id "
            "WHERE j.kind = 'train' AND j.status = 'running' AND r.status = 'running' "
            "AND (SELECT count(*) FROM metrics m WHERE m.run_id = r.id AND m.split = 'val') >= 2")))
    rows = [r for r in rows if r.worker_pid and r.worker_pid not in workers]
    if not rows:
        return {}
    victim = rows[0]
    monitor.resumed.add(victim.id)
    os.kill(victim.worker_pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with db.session() as conn:
            job = conn.execute(sa.text("SELECT status FROM jobs WHERE id = :i"), {"i": victim.id}).scalar_one()
            run = conn.execute(sa.text("SELECT status FROM runs WHERE id = :i"), {"i": victim.run_id}).scalar_one()
        if job != "running":
            break
        time.sleep(0.5)
    out = {"job": victim.id, "run": victim.run_id, "pid": victim.worker_pid, "job_status": job, "run_status": run}
    queue.resume(db, victim.id)
    return out


def epoch_rows(db) -> dict:
    """Each finished run's train-loss and validation rows against epochs 1..epochs_run."""
    import sqlalchemy as sa

    lost = dup = checked = 0
    with db.session() as conn:
        runs = list(conn.execute(sa.text("SELECT id, epochs_run FROM runs WHERE status = 'done'")))
        for split, name in (("train", "loss"), ("val", "NDCG@10")):
            counts = {}
            for r in conn.execute(sa.text("SELECT run_id, epoch, count(*) AS n FROM metrics WHERE split = :s AND "
                                          "name = :n GROUP BY run_id, epoch"), {"s": split, "n": name}):
                counts[(r.run_id, r.epoch)] = r.n
            for run in runs:
                want = set(range(1, int(run.epochs_run or 0) + 1))
                have = {e for (rid, e) in counts if rid == run.id}
                lost += len(want - have)
                dup += len(have - want) + sum(counts[(run.id, e)] - 1 for e in have)
                checked += len(want)
    return {"runs": len(runs), "rows_checked": checked, "lost": lost, "duplicated": dup}


def left_running(db) -> list[str]:
    """Runs and feature sets ``running`` at the end whose job is not running under a live owner."""
    import sqlalchemy as sa

    from storage.owners import alive

    out = []
    with db.session() as conn:
        for kind, sql in (("run", "SELECT r.id AS id, j.status, j.owner FROM runs r LEFT JOIN jobs j ON j.id = r.job_id "
                                  "WHERE r.status = 'running'"),
                          ("feature set", "SELECT f.name AS id, j.status, j.owner FROM feature_sets f LEFT JOIN jobs j "
                                          "ON j.id = f.job_id WHERE f.status = 'running'")):
            for r in conn.execute(sa.text(sql)):
                if not (r.status == "running" and alive(r.owner)):
                    out.append(f"{kind} {r.id} (job {r.status})")
    return out


def wait_for_jobs(db, drain_s: float) -> int:
    """Wait until no job is queued or running, at most ``drain_s``; cancel what is left; returns jobs cancelled."""
    import sqlalchemy as sa

    from storage import queue

    deadline = time.monotonic() + drain_s
    while True:
        with db.session() as conn:
            left = [r.id for r in conn.execute(sa.text("SELECT id FROM jobs WHERE status IN ('queued', 'running')"))]
        if not left:
            return 0
        if time.monotonic() > deadline:
            for job_id in left:
                try:
                    queue.request_cancel(db, job_id)
                except ValueError:  # it finished between the read and the cancel
                    pass
            time.sleep(15)
            return len(left)
        time.sleep(2)


def _merge(dicts) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for d in dicts:
        for k, v in d.items():
            out.setdefault(k, []).extend(v)
    return out


def run_bench(args) -> dict:
    """The whole load test; returns the figures."""
    from browser_helpers import _kill_group
    from jobs.submit import enqueue_extract
    from storage import Database, queue

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dff-load-"))
    folder.mkdir(parents=True, exist_ok=True)
    t_prep = time.perf_counter()
    db_path = prepare(folder)
    db = Database(db_path)
    print(f"database {db_path}, prepared in {time.perf_counter() - t_prep:.0f} s", flush=True)
    dashboard, base = start_dashboard(db_path, args.hold)
    extra_worker = None
    figures: dict = {}
    try:
        with urllib.request.urlopen(base, timeout=30):
            pass
        from browser_helpers import chromium_path, open_page
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:  # the first page view starts the dashboard's worker
            browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
            open_page(browser.new_page(), base, "jobs")
            browser.close()
        pid_file = db_path.with_name(db_path.name + ".worker.pid")
        dash_worker = int(pid_file.read_text().strip())
        extra_worker = subprocess.Popen([sys.executable, "-m", "jobs.worker", "--db", str(db_path)], cwd=str(ROOT),
                                        env=dict(os.environ, PYTHONPATH=str(ROOT)), start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        workers = {dash_worker, extra_worker.pid}
        trains = queue_jobs(db, args.jobs, 1, "demo-topics")
        extract = enqueue_extract(db, dataset="demo", backbone="smollm2", name="load-smollm2", inputs=["title"])
        monitor = Monitor(db_path)
        monitor.start()
        start = time.monotonic()
        until = start + args.duration
        sessions = [Session(base, i, until) for i in range(args.sessions)]
        for s in sessions:
            s.start()
        hold: dict = {}
        holder = threading.Thread(target=hold_visit, args=(base, hold), daemon=True)
        killed: dict = {}
        while time.monotonic() < until:
            elapsed = time.monotonic() - start
            if not holder.is_alive() and not hold and elapsed > 0.2 * args.duration:
                holder.start()
                print(f"{elapsed:.0f} s: a page run holds the database for {args.hold:.0f} s", flush=True)
            if not killed and elapsed > 0.35 * args.duration:
                killed = kill_one_runner(db, workers, monitor)
                if killed:
                    print(f"{elapsed:.0f} s: kill -9 of job {killed['job']}'s runner (pid {killed['pid']}); "
                          f"then job {killed['job_status']}, run {killed['run_status']}; resumed", flush=True)
            waiting = queue.list_jobs(db)
            busy = sum(1 for j in waiting if j.status in ("queued", "running") and j.kind == "train")
            if busy < 2 and until - time.monotonic() > 150:
                trains += queue_jobs(db, 2, len(trains) + 1, "demo-topics")
            time.sleep(5)
        for s in sessions:
            s.join(timeout=120)
        holder.join(timeout=120)
        print(f"{args.duration:.0f} s: browsing ended; waiting for the jobs (at most {args.drain:.0f} s)", flush=True)
        cancelled = wait_for_jobs(db, args.drain)
        monitor.stop.set()
        monitor.join(timeout=30)
        monitor.look()
        import sqlalchemy as sa

        with db.session() as conn:
            status = dict(conn.execute(sa.text("SELECT status, count(*) FROM jobs GROUP BY status")).all())
            extract_status = conn.execute(sa.text("SELECT status FROM jobs WHERE id = :i"), {"i": extract}).scalar()
        times = sorted(t for s in sessions for t in s.times)
        failures = [f for s in sessions for f in s.failures]
        figures = {
            "duration_s": args.duration, "sessions": args.sessions, "train_jobs": len(trains),
            "jobs_by_status": status, "extraction": extract_status, "cancelled_at_drain": cancelled,
            "jobs_finished": int(status.get("done", 0)),
            "false_interruptions": len(monitor.false_interruptions), "false_detail": monitor.false_interruptions,
            "epoch_rows": epoch_rows(db),
            "left_running": sorted(set(left_running(db)) | set(f"{k}: {v}" for k, v in monitor.orphans.items())),
            "page_loads": len(times) + len(failures), "page_loads_failed": len(failures), "failures": failures[:10],
            "p50_page_s": round(statistics.median(times), 2) if times else None,
            "p95_page_s": round(times[int(0.95 * (len(times) - 1))], 2) if times else None,
            "by_page": {slug: {"loads": len(ts), "p50_s": round(statistics.median(ts), 2),
                               "max_s": round(max(ts), 2)}
                        for slug, ts in sorted(_merge(s.by_page for s in sessions).items())},
            "hold": hold, "killed": killed, "monitor_busy_reads": monitor.errors,
            "load_average": os.getloadavg(),
        }
        return figures
    finally:
        if extra_worker is not None:
            _kill_group(extra_worker.pid)
        _kill_group(dashboard.pid)
        try:
            _kill_group(int(db_path.with_name(db_path.name + ".worker.pid").read_text().strip()))
        except (OSError, ValueError):
            pass
        if figures:
            (folder / "load.json").write_text(json.dumps(figures, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        split = argv.index("--") if "--" in argv else len(argv)
        ap = argparse.ArgumentParser()
        ap.add_argument("--hold", type=float, default=40.0)
        args = ap.parse_args(argv[1:split])
        return serve(argv[split + 1:], args.hold)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of browsing (default 600)")
    ap.add_argument("--sessions", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=8, help="training jobs queued at the start (at least 8)")
    ap.add_argument("--hold", type=float, default=40.0, help="seconds one page run holds the database")
    ap.add_argument("--drain", type=float, default=300.0, help="longest wait for the jobs after browsing")
    ap.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temporary one)")
    args = ap.parse_args(argv)
    from browser_helpers import chromium_path

    if chromium_path() is None:
        print("no Chromium found: apt-get install -y chromium", file=sys.stderr)
        return 2
    if args.jobs < 1 or args.sessions < 1 or args.duration <= 0:
        print("--jobs, --sessions and --duration must be positive", file=sys.stderr)
        return 2
    f = run_bench(args)
    rows = f["epoch_rows"]
    print(f"\nload test: {f['duration_s']:.0f} s, {f['sessions']} browser sessions, 2 workers, "
          f"{f['train_jobs']} training jobs + 1 extraction ({f['extraction']}), load average "
          f"{', '.join(f'{x:.1f}' for x in f['load_average'])}")
    print(f"jobs finished: {f['jobs_finished']} (by status: {f['jobs_by_status']}; cancelled at the drain limit: "
          f"{f['cancelled_at_drain']})")
    print(f"false interruptions: {f['false_interruptions']} {f['false_detail'] or ''}")
    print(f"epoch rows lost: {rows['lost']}, duplicated: {rows['duplicated']} "
          f"({rows['rows_checked']} rows checked over {rows['runs']} finished runs)")
    print(f"runs or feature sets left running without a process: {len(f['left_running'])} {f['left_running'] or ''}")
    print(f"page loads failed: {f['page_loads_failed']} of {f['page_loads']} {f['failures'] or ''}")
    print(f"page time: p50 {f['p50_page_s']} s, p95 {f['p95_page_s']} s")
    print("by page (loads, p50, max): " + "; ".join(f"/{k} {v['loads']}, {v['p50_s']} s, {v['max_s']} s"
                                                    for k, v in f["by_page"].items()))
    print(f"hold: {f['hold']}; kill -9: {f['killed']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
