"""Job system latency: how long a queued job waits before it runs, and how often its progress reaches storage.

A worker (``python -m jobs.worker``, as the dashboard starts it) serves a fresh database; the benchmark queues
small training jobs one after another and, polling the database every 20 ms from this process (as the Jobs
page would, only faster), records

* queued -> running: from ``enqueue`` returning until the job's status reads ``running`` (worker poll + the
  runner process start: Python, imports, claim), and until its first progress row;
* progress cadence: the intervals between successive distinct progress values seen while it trains.

    PYTHONPATH=. .venv/bin/python bench/bench_jobs.py [--jobs 5] [--epochs 3]

Prints numbers; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage import queue  # noqa: E402
from jobs.runner import REPORT_EVERY_S  # noqa: E402
from jobs.worker import POLL_S  # noqa: E402
from storage import Database  # noqa: E402


def tiny_dataset(db: Database, folder: Path) -> None:
    from jobs.datasets import import_generic

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,timestamp"]
    for u in range(2000):
        for k, i in enumerate(rng.choice(300, 12, replace=False)):
            lines.append(f"u{u},i{i},{k}")
    (folder / "inter.csv").write_text("\n".join(lines) + "\n")
    (folder / "items.csv").write_text("item_id,title\n" + "\n".join(f"i{i},title {i}" for i in range(300)) + "\n")
    import_generic(db, "bench", folder / "inter.csv", folder / "items.csv")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_jobs_"))
    db = Database(tmp / "jobs.duckdb")
    tiny_dataset(db, tmp / "data")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    worker = subprocess.Popen([sys.executable, "-m", "jobs.worker", "--db", str(db.path)], cwd=ROOT, env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    starts, first_progress, gaps, totals = [], [], [], []
    try:
        time.sleep(3)  # the worker's own start (imports) is not part of a job's wait
        for n in range(args.jobs):
            t0 = time.perf_counter()
            job_id = queue.enqueue(db, "train", {"dataset": "bench", "strategy": "id", "seed": n,
                                                 "settings": {"epochs": args.epochs, "patience": 0, "hidden": 32,
                                                              "batch_size": 128, "log_every": 1}})
            t_enq = time.perf_counter()
            seen: list[tuple[float, float]] = []
            running_at = None
            while True:
                job = queue.get_job(db, job_id)
                now = time.perf_counter()
                if running_at is None and job.status != "queued":
                    running_at = now
                if job.progress and (not seen or job.progress != seen[-1][1]):
                    seen.append((now, job.progress))
                if job.status in ("done", "failed", "cancelled", "interrupted"):
                    break
                time.sleep(0.02)
            if job.status != "done":
                print(f"job {job_id} ended {job.status}: {job.error}")
                continue
            starts.append(running_at - t_enq)
            if seen:
                first_progress.append(seen[0][0] - t_enq)
                gaps += list(np.diff([t for t, _ in seen]))
            totals.append(now - t0)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)

    def line(name: str, values: list[float]) -> str:
        v = np.asarray(values)
        return (f"{name:34} n={len(v):3}  median {np.median(v):6.2f} s  p90 {np.percentile(v, 90):6.2f} s  "
                f"max {v.max():6.2f} s") if len(v) else f"{name:34} n=0"

    print(f"{args.jobs} train jobs ({args.epochs} epochs, 2,000 users x 300 items) through one worker "
          f"(poll every {POLL_S} s, progress throttle {REPORT_EVERY_S} s):")
    print(line("queued -> running", starts))
    print(line("queued -> first progress in storage", first_progress))
    print(line("between progress updates", gaps))
    print(line("queued -> done", totals))


if __name__ == "__main__":
    main()
