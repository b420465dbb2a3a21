"""One writer per job and run, statuses that follow what happened, imports that never stay stuck, and big
queues that stay manageable (``storage.owners``, ``storage.queue``, ``jobs.runner``, ``jobs.worker``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import sqlalchemy as sa

import cli
from data_helpers import ROOT, write_generic
from jobs import submit
from jobs.datasets import import_generic
from jobs.worker import _reap
from jobs.workflows import import_features_npz
from storage import NotFound, owners, queue
from storage.datasets import get_dataset, load_items
from storage.features import create_feature_set, get_feature_set, list_feature_sets, read_features, write_vectors
from storage.owners import NotOwner, Owner
from storage.runs import create_run, get_run, log_metrics, run_metrics

ENV = dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.fixture
def dataset(db, tmp_path):
    return import_generic(db, "d", *write_generic(tmp_path / "d", n_users=60, n_items=40, seq=6))


def _claimed(db, kind: str = "train", params: dict | None = None) -> queue.Job:
    queue.enqueue(db, kind, params or {"dataset": "d", "strategy": "id"})
    return queue.claim_next(db, os.getpid())


def _dead_identity() -> str:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return owners.identity(dead.pid).rsplit(":", 1)[0] + ":1"  # this host, a pid that no longer runs


def _cli(db, capsys, *args):
    code = cli.main(["--db", str(db.path), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------------ one writer per job, run

def test_writes_under_an_old_claim_are_refused_and_write_nothing(db, dataset):
    job = _claimed(db)
    old = Owner(job.id, job.claim_token)
    run = create_run(db, dataset.id, "id", {}, job_id=job.id, owner=old)
    log_metrics(db, run.id, 1, "val", {"NDCG@10": 0.1}, owner=old)
    # the job is requeued and claimed again (a second runner): the first runner's claim is void
    with db.session() as conn:
        conn.execute(sa.text("UPDATE jobs SET status = 'queued', claim_token = NULL, owner = NULL WHERE id = :i"),
                     {"i": job.id})
    again = queue.claim_next(db, os.getpid())
    assert again.id == job.id and again.claim_token != job.claim_token
    with pytest.raises(NotOwner):
        queue.report(db, job.id, progress=0.9, step="old runner", owner=old)
    with pytest.raises(NotOwner):
        log_metrics(db, run.id, 2, "val", {"NDCG@10": 0.2}, owner=old)
    with pytest.raises(NotOwner):
        queue.finish(db, job.id, "done", owner=old)
    fresh = queue.get_job(db, job.id)
    assert (fresh.status, fresh.step, fresh.progress) == ("running", None, 0.0)
    assert run_metrics(db, [run.id])["epoch"].tolist() == [1]
    queue.report(db, job.id, progress=0.5, owner=Owner(job.id, again.claim_token))  # the new owner writes
    assert queue.get_job(db, job.id).progress == 0.5


def test_a_runner_with_a_void_claim_exits_without_writing(db, dataset):
    job = _claimed(db)
    res = subprocess.run([sys.executable, "-m", "jobs.runner", str(job.id), "--db", str(db.path), "--token", "stale"],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 3, res.stderr
    after = queue.get_job(db, job.id)
    assert (after.status, after.log, after.owner) == ("running", "", owners.identity(os.getpid()))


def test_take_over_moves_the_claim_to_the_runner(db):
    job = _claimed(db)
    assert queue.take_over(db, job.id, "another token") is None
    taken = queue.take_over(db, job.id, job.claim_token, pid=os.getpid())
    assert taken.owner == owners.identity() and taken.claim_token == job.claim_token


def test_retry_and_resume_refuse_while_the_owner_lives(db, dataset):
    job = _claimed(db)  # owned by this (live) process
    with db.session() as conn:  # marked failed by someone else while its process still runs
        conn.execute(sa.text("UPDATE jobs SET status = 'failed' WHERE id = :i"), {"i": job.id})
    for action in (queue.retry, queue.resume):
        with pytest.raises(ValueError, match="still running"):
            action(db, job.id)
    assert queue.get_job(db, job.id).status == "failed"
    with db.session() as conn:
        conn.execute(sa.text("UPDATE jobs SET owner = :o WHERE id = :i"), {"o": _dead_identity(), "i": job.id})
    queue.resume(db, job.id)
    assert queue.get_job(db, job.id).status == "queued"


def test_a_reused_pid_is_not_the_owner(db):
    ident = owners.identity()
    host, pid, start = ident.rsplit(":", 2)
    assert owners.alive(ident) is True
    assert owners.alive(f"{host}:{pid}:{int(start) + 1}") is False   # same pid, a later process
    assert owners.alive(f"elsewhere:{pid}:{start}") is None           # another host: this one cannot tell


# ----------------------------------------------------------------------------- statuses follow what happened

def test_a_runner_reaped_dead_fails_its_run_and_feature_set_at_once(db, dataset):
    job = _claimed(db)
    owner = Owner(job.id, job.claim_token)
    run = create_run(db, dataset.id, "id", {}, job_id=job.id, owner=owner)
    fs = create_feature_set(db, "d", "f", "test", 2, 4, owner=owner)
    _reap(db, job.id, job.claim_token, -9)  # the worker saw its runner die (kill -9, OOM killer)
    assert queue.get_job(db, job.id).status == "failed"
    assert get_run(db, run.id).status == "failed"
    assert get_feature_set(db, fs.id).status == "failed"
    _reap(db, job.id, job.claim_token, -9)  # a second reap of an ended job changes nothing
    assert queue.get_job(db, job.id).status == "failed"


def test_a_reap_after_the_job_moved_on_leaves_it_alone(db, dataset):
    job = _claimed(db)
    queue.finish(db, job.id, "done", owner=Owner(job.id, job.claim_token))
    _reap(db, job.id, job.claim_token, 0)
    assert queue.get_job(db, job.id).status == "done"


def test_a_dead_owner_interrupts_job_run_and_feature_set_together(db, dataset):
    job = _claimed(db, "extract", {"dataset": "d", "backbone": "x", "name": "f"})
    fs = create_feature_set(db, "d", "f", "test", 2, 4, owner=Owner(job.id, job.claim_token))
    with db.session() as conn:
        conn.execute(sa.text("UPDATE jobs SET owner = :o WHERE id = :i"), {"o": _dead_identity(), "i": job.id})
    assert queue.mark_stale(db) == [job.id]
    assert queue.get_job(db, job.id).status == "interrupted"
    assert get_feature_set(db, fs.id).status == "interrupted"
    assert queue.request_cancel(db, job.id) == "cancelled (its worker had stopped)"
    assert get_feature_set(db, fs.id).status == "cancelled"


def test_kill_9_of_a_runner_under_a_live_worker_leaves_nothing_running(db, tmp_path):
    import_generic(db, "big", *write_generic(tmp_path / "big", n_users=600, n_items=80, seq=10))
    settings = {"epochs": 200, "patience": 0, "hidden": 16, "batch_size": 64, "max_len": 20, "num_threads": 1}
    job_id = queue.enqueue(db, "train", {"dataset": "big", "strategy": "id", "seed": 1, "settings": settings})
    worker = subprocess.Popen([sys.executable, "-m", "jobs.worker", "--db", str(db.path)], cwd=ROOT, env=ENV,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from test_jobs import val_epochs, wait_for

        run_id = wait_for(lambda: (queue.get_job(db, job_id, fresh=False).result or {}).get("run_id"),
                          timeout=300, what="the run to start")
        wait_for(lambda: val_epochs(db, run_id), timeout=300, what="an epoch")
        runner_pid = queue.get_job(db, job_id, fresh=False).worker_pid
        assert runner_pid not in (None, worker.pid)
        os.kill(runner_pid, signal.SIGKILL)  # what the OOM killer does; the worker lives on
        wait_for(lambda: queue.get_job(db, job_id, fresh=False).status != "running", timeout=120,
                 what="the job to end")
        job, run = queue.get_job(db, job_id), get_run(db, run_id)
        assert job.status in ("failed", "interrupted") and run.status == job.status
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


# ------------------------------------------------------------------------------ feature imports, deletion

def _npz(tmp_path, db, n: int | None = None):
    items = load_items(db, get_dataset(db, "d").id)
    ids = np.asarray(items["item_id"].astype(str).tolist()[:n], dtype=str)
    feats = np.random.default_rng(0).normal(size=(len(ids), 2, 4)).astype(np.float32)
    path = tmp_path / "f.npz"
    np.savez(path, item_ids=ids, features=feats)
    return path, items, feats


def test_an_import_killed_part_way_resumes_when_imported_again(db, dataset, tmp_path, capsys):
    path, items, feats = _npz(tmp_path, db)
    # what a kill -9 during import-features leaves: the set running, a third of the items, a writer that is gone
    fs = create_feature_set(db, "d", "f", "imported", 2, 4, dtype="float32", params={"source": str(path)})
    write_vectors(db, fs, items["idx"].to_numpy()[:13], feats[:13])
    with db.session() as conn:
        conn.execute(sa.text("UPDATE feature_sets SET writer = :w WHERE id = :i"), {"w": _dead_identity(), "i": fs.id})
    code, out, err = _cli(db, capsys, "import-features", "f", "--dataset", "d", "--npz", str(path))
    assert code == 0, err
    done = get_feature_set(db, "f", dataset="d")
    assert done.id == fs.id and done.status == "complete" and done.stats["items"] == len(items)
    stored, present = read_features(db, done)
    assert present.all() and np.allclose(stored[items["idx"].to_numpy()], feats)


def test_an_import_being_written_by_a_live_process_is_not_taken_over(db, dataset, tmp_path):
    path, _, _ = _npz(tmp_path, db)
    create_feature_set(db, "d", "f", "imported", 2, 4, params={"source": str(path)})
    with db.session() as conn:  # another live process (here: a live pid that is not us) writes it
        conn.execute(sa.text("UPDATE feature_sets SET writer = :w"), {"w": owners.identity(os.getppid())})
    with pytest.raises(ValueError, match="being written right now"):
        import_features_npz(db, "f", "d", path)


def test_delete_features_from_the_cli(db, dataset, tmp_path, capsys):
    path, _, _ = _npz(tmp_path, db, n=10)
    import_features_npz(db, "f", "d", path)
    code, out, err = _cli(db, capsys, "import-features", "f", "--dataset", "d", "--npz", str(path))
    assert code == 2 and "delete-features f --dataset d" in err
    code, out, err = _cli(db, capsys, "delete-features", "f", "--dataset", "d")
    assert code == 0 and "deleted feature set 'f'" in out
    assert list_feature_sets(db, "d") == []
    code, out, err = _cli(db, capsys, "delete-features", "f")
    assert code == 2 and err.startswith("error: no feature set 'f'") and "Traceback" not in err


def test_delete_features_refuses_a_set_a_queued_job_needs(db, dataset, tmp_path):
    from storage.removal import delete_features

    path, _, _ = _npz(tmp_path, db, n=10)
    import_features_npz(db, "f", "d", path)
    job_id = submit.enqueue_train(db, "d", "replace", "f", "all", {"epochs": 1}, 1)
    with pytest.raises(ValueError, match=f"job\\(s\\) {job_id}"):
        delete_features(db, "f", dataset="d")
    assert get_feature_set(db, "f", dataset="d").status == "partial"  # 10 of 40 items: kept


# ------------------------------------------------------------------------------------------- big queues

def test_seed_and_run_bounds_refuse_in_one_line_and_queue_nothing(db, dataset):
    with pytest.raises(ValueError, match="1,000,000 is more than this installation allows"):
        submit.parse_seeds("1000000", number_is_count=True)
    with pytest.raises(ValueError, match="DFF_MAX_SEEDS"):
        submit.parse_seeds(",".join(str(i) for i in range(1, 3001)))
    with pytest.raises(ValueError, match="3,000 is more than"):
        submit.enqueue_sweep(db, "d", None, ["id"], ["all"], list(range(3000)), "s", {"epochs": 1})
    with pytest.raises(ValueError, match="training runs, more than this installation allows"):
        submit.check_run_count(submit.MAX_RUNS + 1)
    assert queue.list_jobs(db) == []


def test_a_sweep_over_the_run_bound_is_refused(db, dataset, monkeypatch):
    monkeypatch.setattr(submit, "MAX_RUNS", 5)
    with pytest.raises(ValueError, match="would queue 6 training runs"):
        submit.enqueue_sweep(db, "d", None, ["id"], ["all"], [1, 2, 3, 4, 5, 6], "s", {"epochs": 1})
    assert queue.list_jobs(db) == []


def test_cancel_a_whole_group_in_one_action(db, dataset, capsys):
    ids = queue.enqueue_many(db, "train", [{"dataset": "d", "strategy": "id", "seed": s} for s in range(3000)],
                             group="big")
    other = queue.enqueue(db, "train", {"dataset": "d", "strategy": "id"}, group="other")
    running = queue.claim_next(db, os.getpid())  # the oldest of the group runs
    code, out, err = _cli(db, capsys, "cancel", "--group", "big")
    assert code == 0 and "2999 job(s) cancelled, 1 running job(s) asked to stop" in out
    with db.session() as conn:
        rows = dict(conn.execute(sa.text("SELECT status, count(*) FROM jobs WHERE group_name = 'big' "
                                         "GROUP BY status")).fetchall())
    assert rows == {"cancelled": 2999, "running": 1}
    assert queue.get_job(db, running.id).cancel_requested and running.id == ids[0]
    assert queue.get_job(db, other).status == "queued"
    code, out, err = _cli(db, capsys, "cancel", "--group", "nothing-here")
    assert code == 2 and "has no queued, running or interrupted job" in err
    code, out, err = _cli(db, capsys, "cancel")
    assert code == 2 and "a job id or --group" in err


def test_a_sweep_cancelled_before_it_expands_queues_nothing(db, dataset):
    from jobs.context import JobContext
    from jobs.handlers import handle_sweep

    sweep_id = submit.enqueue_sweep(db, "d", None, ["id"], ["all"], [1, 2, 3], "s", {"epochs": 1})
    job = queue.claim_next(db, os.getpid())
    queue.request_cancel(db, sweep_id)
    handle_sweep(db, job, JobContext(db, job))
    assert [j.id for j in queue.list_jobs(db)] == [sweep_id]
