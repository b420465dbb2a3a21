"""The job worker: ``python -m jobs.worker [--db FILE] [--concurrency 1] [--once]``.

Polls the queue, claims jobs and runs each in its own ``jobs.runner`` process, at most ``concurrency`` at
a time (default 1 on a 2-core machine; ``DFF_WORKERS`` overrides). On start and every few seconds it marks
jobs whose process died as interrupted. The dashboard starts one worker in the background
(``ensure_worker``); a pid file keeps it to one per database. That worker watches the dashboard's process
(``--parent-pid``): once the dashboard is gone it claims nothing new, lets a running job finish and exits
after ``APP_GONE_GRACE_S``. A worker started on its own (no ``--parent-pid``) runs until stopped.

Training runs side by side: while every job it runs is a training run, the worker starts up to
``train_slots()`` of them at once (``DFF_TRAIN_SIDE_BY_SIDE``, default 2; 1 turns it off), each on its share of
the cores when it has a partner (``OMP_NUM_THREADS``, unless you set it). Why: on 2 CPU cores two single-thread
runs train 1.40-1.46x as many epochs an hour as one two-thread run at a time (whole MicroLens-50k, ID, gate and
DFF; ``bench/bench_time_to_quality.py --parallel 2``): a run's small ops and Python leave the second core idle
between the big products. A second run starts only when the oldest queued job is a training run (never ahead of
an extraction it may need) and when the machine's available memory holds what both runs may still grow to
(``run_bytes``; no pairing where it cannot be read). Each run records how many ran side by side
(``DFF_SIDE_BY_SIDE``), so the estimate reads its seconds per epoch for what they are.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from storage import queue
from storage import Database
from storage.owners import NotOwner, Owner

POLL_S = 0.5
ROOT = Path(__file__).resolve().parent.parent
SIDE_BY_SIDE_ENV = "DFF_SIDE_BY_SIDE"     # set for a runner: how many training runs its worker meant to run at once
BASE_RUN_BYTES = 2 << 30                  # a training run beside its features: torch, the split, the softmax blocks
# a worker the dashboard started (``--parent-pid``) exits this long after the dashboard is gone and nothing runs
APP_GONE_GRACE_S = float(os.environ.get("DFF_APP_GONE_GRACE_S", "5"))


def _pid_file(db: Database) -> Path:
    return db.path.with_name(db.path.name + ".worker.pid")


def _parent_alive(parent_pid: int | None) -> bool:
    """True while the process that started us is alive. A dead parent's children are re-parented (to init or
    a subreaper), so ``getppid`` changing is the signal — immune to the parent's pid being reused."""
    return parent_pid is None or os.getppid() == parent_pid


def run_worker(db: Database, concurrency: int = 1, once: bool = False, idle_exit_s: float | None = None,
               parent_pid: int | None = None, train_slots_n: int | None = None) -> None:
    """Claim and run jobs until stopped (``once``: until the queue is empty and nothing runs; ``parent_pid``:
    until that process — the dashboard — is gone and the running jobs have finished). At most ``concurrency``
    jobs at once, and up to ``train_slots_n`` (default :func:`train_slots`) while all of them are training runs."""
    children: dict[int, tuple[subprocess.Popen, str, queue.Job]] = {}  # job id -> (runner, claim token, job)
    app_gone_since: float | None = None
    queue.mark_stale(db)
    last_stale_check = time.monotonic()
    idle_since = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see dff_core/__main__.py: spinning threads on shared CPUs
    slots = train_slots() if train_slots_n is None else max(1, int(train_slots_n))
    while True:
        for job_id, (proc, token, _) in list(children.items()):
            if proc.poll() is not None:
                del children[job_id]
                _reap(db, job_id, token, proc.returncode)
        if app_gone_since is None and not _parent_alive(parent_pid):
            app_gone_since = time.monotonic()
        while app_gone_since is None:
            running = [j for _, _, j in children.values()]
            if len(children) < concurrency:
                job = queue.claim_next(db, os.getpid())
            elif len(children) < slots and _may_add_training_run(db, [(j, p.pid) for p, _, j in children.values()]):
                job = queue.claim_next(db, os.getpid(), kinds=("train",), head_only=True)
            else:
                break
            if job is None:
                break
            children[job.id] = (subprocess.Popen(
                [sys.executable, "-m", "jobs.runner", str(job.id), "--db", str(db.path), "--token", job.claim_token],
                cwd=str(ROOT), env=_runner_env(env, db, job, running, slots)), job.claim_token, job)
        if children:
            idle_since = time.monotonic()
        elif once:
            return
        elif app_gone_since is not None and time.monotonic() - app_gone_since > APP_GONE_GRACE_S:
            return  # the dashboard that started us is gone and nothing runs
        elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
            return
        if time.monotonic() - last_stale_check > 10:
            queue.mark_stale(db)
            last_stale_check = time.monotonic()
        time.sleep(POLL_S)


def _env_count(name: str, default: int) -> int:
    """A count of at least 1 from the environment; 1 where the value is not an integer."""
    try:
        return max(1, int(os.environ.get(name, str(default))))
    except ValueError:
        return 1


def train_slots() -> int:
    """How many training runs a worker runs side by side (``DFF_TRAIN_SIDE_BY_SIDE``, default 2; at least 1)."""
    return _env_count("DFF_TRAIN_SIDE_BY_SIDE", 2)


def side_by_side_now() -> int:
    """How many training runs this process's worker meant to run at once (:data:`SIDE_BY_SIDE_ENV`, set by
    :func:`_runner_env`; 1 outside a worker): stored with the run, so its seconds per epoch are read as what they
    are (``jobs.estimates``)."""
    return _env_count(SIDE_BY_SIDE_ENV, 1)


def cpu_count() -> int:
    """The cores this process may run on (its affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _runner_env(env: dict, db: Database, job: queue.Job, running: list[queue.Job], slots: int) -> dict:
    """The runner's environment. A training run with a partner (another training run running, or next in the
    queue) gets ``cpu_count() // slots`` threads (unless ``OMP_NUM_THREADS`` is set), and every training run
    records how many ran side by side (:data:`SIDE_BY_SIDE_ENV`); a run alone keeps every core."""
    if job.kind != "train" or slots < 2:
        return env
    nxt = queue.next_queued(db)  # the job after this one (the claim took the one _may_add_training_run peeked)
    partnered = any(j.kind == "train" for j in running) or (nxt is not None and nxt.kind == "train")
    out = dict(env, **{SIDE_BY_SIDE_ENV: str(slots if partnered else 1)})
    if partnered and "OMP_NUM_THREADS" not in os.environ:
        out["OMP_NUM_THREADS"] = str(max(1, cpu_count() // slots))
    return out


def available_memory() -> int | None:
    """Bytes the machine can still give (``MemAvailable``), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def resident_bytes(pid: int) -> int:
    """A process's resident memory (0 where it cannot be read)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_bytes(db: Database, job: queue.Job) -> int:
    """What a training run may hold at its peak: :data:`BASE_RUN_BYTES` plus its feature values at 4 bytes (a
    stored float32 set is read whole before its bfloat16 copy is made); generous by design."""
    from dff_core.layers import parse_layers
    from storage.datasets import get_dataset
    from storage.features import get_feature_set

    p = job.params
    if p.get("strategy") == "id" or not p.get("features"):
        return BASE_RUN_BYTES
    try:
        fs = get_feature_set(db, p["features"], dataset=p["dataset"])
        items = int(get_dataset(db, p["dataset"]).stats.get("items") or 0)
        chosen = parse_layers(p.get("layers"), fs.num_layers)
    except (LookupError, ValueError):
        return BASE_RUN_BYTES * 4            # unknown: it fails fast, or is big; pair only with room to spare
    return BASE_RUN_BYTES + items * (len(chosen) if chosen else fs.num_layers) * int(fs.dim) * 4


def _may_add_training_run(db: Database, running: list[tuple[queue.Job, int]]) -> bool:
    """Whether another training run may start beside ``running`` (job, runner pid): all of them training runs, the
    queue's oldest job a training run, and the memory available holding its peak plus what the running ones may
    still grow to."""
    if not running or any(j.kind != "train" for j, _ in running):
        return False
    nxt = queue.next_queued(db)
    if nxt is None or nxt.kind != "train":
        return False
    free = available_memory()
    if free is None:
        return False
    growth = sum(max(0, run_bytes(db, j) - resident_bytes(pid)) for j, pid in running)
    return free >= run_bytes(db, nxt) + growth


def _reap(db: Database, job_id: int, token: str, returncode: int) -> None:
    """A runner exited. If the job is still running under the claim this worker gave it, the runner died
    before recording an outcome (killed, out of memory): the job fails, and its run and feature set with it
    (``queue.finish`` cascades). A job that ended or moved on meanwhile is left alone."""
    try:
        queue.finish(db, job_id, "failed", owner=Owner(job_id, token),
                     error=f"the job process exited with status {returncode} (killed, or out of memory?)")
    except NotOwner:
        pass


def ensure_worker(db: Database, concurrency: int | None = None) -> int:
    """Start a background worker for ``db`` unless one is alive; returns its pid."""
    pid_file = _pid_file(db)
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text().strip())
            if queue._pid_alive(pid):  # a bare pid: the file names no start time
                return pid
        except ValueError:
            pass
    concurrency = concurrency or int(os.environ.get("DFF_WORKERS", "1"))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(db.path.with_name(db.path.name + ".worker.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "jobs.worker", "--db", str(db.path), "--concurrency",
                             str(concurrency), "--parent-pid", str(os.getpid())], cwd=str(ROOT), env=env,
                            stdout=log, stderr=log, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    return proc.pid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jobs.worker")
    ap.add_argument("--db", default=None)
    ap.add_argument("--concurrency", type=int, default=int(os.environ.get("DFF_WORKERS", "1")))
    ap.add_argument("--side-by-side", type=int, default=None,
                    help="training runs at once (default DFF_TRAIN_SIDE_BY_SIDE or 2; 1: one at a time)")
    ap.add_argument("--once", action="store_true", help="exit when the queue is empty")
    ap.add_argument("--parent-pid", type=int, default=None,
                    help="exit once this process (the dashboard that started the worker) is gone")
    args = ap.parse_args(argv)
    db = Database(args.db)
    pid_file = _pid_file(db)
    pid_file.write_text(str(os.getpid()))
    try:
        run_worker(db, concurrency=max(1, args.concurrency), once=args.once, parent_pid=args.parent_pid,
                   train_slots_n=args.side_by_side)
    except KeyboardInterrupt:
        pass
    finally:
        try:  # leave the pid file to a newer worker that took over
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
