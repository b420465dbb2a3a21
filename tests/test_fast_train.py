"""Fast path for training: sampled softmax (uniform / in-batch, history masked), device choice, checkpoints that
move between devices, and the options reaching every entry point (CLI, submit, sweep, study, stored config)."""
import numpy as np
import pytest
import torch

from data_helpers import strip_times, write_generic
from jobs.datasets import import_generic
from dff_core.data.split import leave_one_out
from dff_core.eval import popularity_baseline
from dff_core.train import TrainConfig, TrainingBatches, train
from dff_core.train import trainer as trainer_mod
from dff_core.train.device import resolve_device
from dff_core.train.negatives import NegativeSampler
from dff_core.train.trainer import CHECKPOINT_NAME, sampled_softmax_loss

NO_CUDA = not torch.cuda.is_available()


def chain_data(seed=0, n_items=60, users=240, seq_len=8, jump=0.1):
    """Each user walks the item ring ``i -> i + 1`` (a random jump with probability ``jump``): the next item is
    predictable from the last one, while every item is about equally popular, so popularity ranks near chance."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(users):
        s = [int(rng.integers(n_items))]
        while len(s) < seq_len:
            nxt = (s[-1] + 1) % n_items if rng.random() > jump else int(rng.integers(n_items))
            if nxt not in s:
                s.append(nxt)
        seqs.append(np.array(s))
    return leave_one_out(seqs, n_items)


def cfg(**kw):
    base = dict(strategy="id", epochs=12, batch_size=32, lr=5e-3, hidden=16, blocks=1, heads=1, max_len=8,
                dropout=0.2, patience=20, log_every=100, num_threads=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def chain():
    return chain_data()


# ------------------------------------------------------------------------------------------ the loss

# sampled softmax (16 negatives of 60 items) must land within this absolute test NDCG@10 of full softmax
TOLERANCE = 0.05


def test_sampled_loss_close_to_full_and_far_above_popularity(chain):
    pop = popularity_baseline(chain, "test").metrics["NDCG@10"]
    full = train(chain, cfg(loss="full")).test["NDCG@10"]
    uniform = train(chain, cfg(loss="sampled", negatives=16)).test["NDCG@10"]
    in_batch = train(chain, cfg(loss="sampled", negatives=16, negative_sampler="in-batch")).test["NDCG@10"]
    assert pop < 0.15 and full > 0.6  # the task is learnable and popularity cannot solve it
    for name, value in (("uniform", uniform), ("in-batch", in_batch)):
        assert abs(value - full) <= TOLERANCE, (name, value, full)
        assert value > 4 * pop, (name, value, pop)


def test_sampled_softmax_loss_puts_the_positive_at_logit_0_and_ignores_empty_negatives():
    torch.manual_seed(0)
    table = torch.randn(7, 4)
    table[0] = 0
    h = torch.randn(2, 3, 4)
    targets = torch.tensor([[0, 2, 3], [1, 4, 5]])
    negatives = torch.tensor([[6, 0], [6, 2]])  # row 0 has one negative only (0 = none)
    got = sampled_softmax_loss(h, targets, negatives, table)
    terms = []
    for b, t in ((0, 1), (0, 2), (1, 0), (1, 1), (1, 2)):
        logits = [h[b, t] @ table[targets[b, t]]] + [h[b, t] @ table[n] for n in negatives[b] if n > 0]
        terms.append(-torch.log_softmax(torch.stack(logits), 0)[0])
    assert got.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)


# ------------------------------------------------------------------------------------------- negatives

def _rows_histories(data):
    return [np.asarray(s) for s in data.train if len(s) >= 2]


@pytest.mark.parametrize("kind", ["uniform", "in-batch"])
def test_negatives_never_come_from_the_users_own_history(chain, kind):
    histories = _rows_histories(chain)
    assert len(histories) == len(TrainingBatches.build(chain, 8))  # same rows as the training batches
    sampler = NegativeSampler(histories, chain.num_items, 64, kind, torch.Generator().manual_seed(0))
    rows = torch.arange(len(histories))
    targets = TrainingBatches.build(chain, 8).targets[:32]
    neg = sampler.sample(rows, targets)
    assert neg.shape == (len(histories), 64) and neg.dtype == torch.int64
    for r, hist in enumerate(histories):
        assert not set(neg[r].tolist()) & set((hist + 1).tolist())  # model index = item + 1
    assert (neg > 0).float().mean() > 0.99  # redrawn, not dropped
    if kind == "in-batch":
        assert set(neg[neg > 0].tolist()) <= set(targets[targets > 0].tolist())
    else:
        assert len(set(neg[neg > 0].tolist())) == chain.num_items  # the whole catalogue is reachable


def test_a_user_who_has_seen_everything_gets_no_negatives():
    histories = [np.arange(5), np.array([0, 1])]
    neg = NegativeSampler(histories, 5, 8, "uniform", torch.Generator().manual_seed(0)).sample(torch.tensor([0, 1]))
    assert (neg[0] == 0).all()
    assert set(neg[1].tolist()) <= {3, 4, 5}


# ----------------------------------------------------------------------------------- resume and devices

def test_resume_after_kill_with_sampled_loss_equals_uninterrupted(chain, tmp_path):
    c = dict(loss="sampled", negatives=8, epochs=4)
    full = train(chain, cfg(**c))

    def die_after_epoch_2(event):
        if event["type"] == "epoch" and event["epoch"] == 2:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train(chain, cfg(**c), checkpoint_dir=tmp_path, callback=die_after_epoch_2)
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert saved["state"]["epoch"] == 2 and saved["rng_negatives"] is not None
    resumed = train(chain, cfg(**c), checkpoint_dir=tmp_path)
    assert strip_times(resumed.history) == strip_times(full.history)
    assert resumed.test == full.test and resumed.val == full.val
    # the negatives' generator matters: another seed for it would give other results
    assert train(chain, cfg(**c, seed=4)).test != full.test


def test_checkpoint_resumes_under_another_device_string_via_map_location(chain, tmp_path, monkeypatch):
    c = dict(loss="sampled", negatives=8, epochs=3, device="cpu")
    full = train(chain, cfg(**c))

    def die_after_epoch_1(event):
        if event["type"] == "epoch" and event["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(chain, cfg(**c), checkpoint_dir=tmp_path, callback=die_after_epoch_1)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(trainer_mod.torch, "load", spy)
    resumed = train(chain, cfg(**{**c, "device": "auto"}), checkpoint_dir=tmp_path)  # device is resume-free
    assert calls == ["cpu"]  # tensors written on any device come back on the CPU first
    assert resumed.test == full.test
    params = list(resumed.model.parameters())
    assert all(p.device.type == "cpu" for p in params)


def test_load_checkpoint_maps_every_tensor_to_cpu(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"model": {"w": torch.ones(2)}, "optimizer": {"state": {0: {"exp_avg": torch.zeros(2)}}}}, path)
    got = trainer_mod.load_checkpoint(path)
    assert got["model"]["w"].device.type == "cpu" and got["optimizer"]["state"][0]["exp_avg"].device.type == "cpu"


@pytest.mark.skipif(not NO_CUDA, reason="checks the CPU-only machine")
def test_device_resolution_without_cuda():
    assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu" and resolve_device("CPU") == "cpu"
    for spec, msg in (("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                      ("tpu", "unknown device"), ("cuda:x", "unknown device")):
        with pytest.raises(ValueError, match=msg):
            resolve_device(spec)


def test_config_validation_names_the_bad_setting():
    for kw, msg in ((dict(loss="bpr"), "unknown loss"), (dict(negative_sampler="pop"), "unknown negative sampler"),
                    (dict(loss="sampled", negatives=0), "negatives"), (dict(amp="fp8"), "unknown amp")):
        with pytest.raises(ValueError, match=msg):
            cfg(**kw).validate()


# -------------------------------------------------------------------------------- entry points

@pytest.fixture
def dataset(db, tmp_path):
    return import_generic(db, "d", *write_generic(tmp_path / "d", n_users=30, n_items=20, seq=7))


@pytest.mark.skipif(not NO_CUDA, reason="checks the CPU-only machine")
def test_cli_refuses_cuda_and_cpu_bf16_with_one_line(db, dataset, capsys, monkeypatch):
    from cli import main

    monkeypatch.setenv("DFF_CPU_BF16", "0")  # a CPU without native bfloat16: refused (with it, bf16 runs)
    for extra, msg in ((["--device", "cuda"], "CUDA is not available"), (["--amp", "bf16"], "needs a CUDA device or a CPU"),
                       (["--device", "gpu"], "unknown device")):
        for cmd in (["train"], ["submit", "train"]):
            assert main(["--db", str(db.path), *cmd, "--dataset", "d", "--strategy", "id", *extra]) == 2
            err = capsys.readouterr().err.strip()
            assert msg in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert main(["--db", str(db.path), "submit", "sweep", "--dataset", "d", "--strategies", "id", "--study", "s",
                 "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    from storage.queue import list_jobs
    assert list_jobs(db) == []  # nothing queued


def test_run_stores_loss_and_resolved_device_and_compare_shows_them(db, dataset, capsys):
    import json

    from cli import main
    from dff_core.compare import leaderboard
    from dff_core.devices import cpu_has_bf16
    from storage import views
    from storage.runs import get_run

    assert main(["--db", str(db.path), "train", "--dataset", "d", "--strategy", "id", "--epochs", "2",
                 "--hidden", "16", "--loss", "sampled", "--negatives", "5", "--negative-sampler", "in-batch",
                 "--batch-size", "8", "--lr", "0.005", "--device", "auto", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    config = get_run(db, out["run_id"]).config
    assert {k: config[k] for k in ("loss", "negatives", "negative_sampler", "batch_size", "lr", "amp")} == {
        "loss": "sampled", "negatives": 5, "negative_sampler": "in-batch", "batch_size": 8, "lr": 0.005,
        "amp": "bf16" if cpu_has_bf16() and config["device"] == "cpu" else "none"}  # amp auto, stored resolved
    assert config["device"] == resolve_device("auto")  # stored resolved, not "auto"
    assert config["batching"] == "length"
    board = leaderboard(views.runs_frame(db))
    assert board.loc[0, "loss"] == "sampled 5 in-batch" and board.loc[0, "device"] == config["device"]


def test_sweep_and_study_carry_the_training_options(db, dataset):
    from cli import main
    from dff_core.study.plan import StudyRequest
    from jobs.study import queue_study
    from jobs.handlers import expand_sweep
    from storage.queue import list_jobs
    from jobs.submit import enqueue_sweep, enqueue_train
    from storage.features import create_feature_set, finish_feature_set, write_vectors

    assert main(["--db", str(db.path), "submit", "sweep", "--dataset", "d", "--strategies", "id", "--study", "s",
                 "--loss", "sampled", "--negatives", "7", "--device", "cpu"]) == 0
    sweep = list_jobs(db, group="s")[0]
    child = expand_sweep(sweep.params)[0]["settings"]
    assert child["loss"] == "sampled" and child["negatives"] == 7 and child["device"] == "cpu"
    with pytest.raises(ValueError, match="unknown loss"):
        enqueue_train(db, "d", "id", None, None, {"loss": "nope"}, 1)
    with pytest.raises(ValueError, match="negatives"):
        enqueue_sweep(db, "d", None, ["id"], ["all"], [1], "s2", {"loss": "sampled", "negatives": 0})

    items = dataset.stats["items"]
    fs = create_feature_set(db, "d", "hs", "synthetic", 3, 4)
    write_vectors(db, fs, np.arange(items), np.random.default_rng(0).normal(size=(items, 3, 4)).astype(np.float32))
    finish_feature_set(db, fs, "complete")
    req = StudyRequest(dataset="d", features="hs", seeds=[1], epochs=1, name="st",
                       extra_settings={"loss": "sampled", "negative_sampler": "in-batch"})
    queue_study(db, req)
    params = list_jobs(db, group="st")[0].params
    assert params["settings"]["loss"] == "sampled" and params["settings"]["negative_sampler"] == "in-batch"
    if NO_CUDA:
        with pytest.raises(ValueError, match="CUDA is not available"):
            queue_study(db, StudyRequest(dataset="d", features="hs", name="st2", extra_settings={"device": "cuda"}))


def test_batch_and_lr_defaults_follow_the_dataset_size(db, dataset, capsys, monkeypatch):
    """Unset batch size and learning rate come from the dataset's size (README, Fast path: training); what is
    given wins, and the run's config stores what it trained with."""
    import json

    from cli import main
    from dff_core.train import defaults
    from storage.runs import get_run

    assert defaults.scale_defaults(None) == defaults.scale_defaults(9_999) == {"batch_size": 256, "lr": 1e-3,
                                                                             "lr_decay": 1.0, "feature_lr_mult": 1.0}
    assert defaults.scale_defaults(10_000) == {"batch_size": 1024, "lr": 1e-2, "lr_decay": 0.5, "feature_lr_mult": 0.3}
    assert defaults.with_defaults({"batch_size": 64, "lr": None}, 50_000) | {"device": "x"} == {
        **defaults.TRAIN_DEFAULTS, "batch_size": 64, "lr": 1e-2, "lr_decay": 0.5, "feature_lr_mult": 0.3, "device": "x"}

    def trained_config() -> dict:
        assert main(["--db", str(db.path), "train", "--dataset", "d", "--strategy", "id", "--epochs", "1",
                     "--hidden", "16", "--device", "cpu", "--json"]) == 0
        run_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
        return get_run(db, run_id).config

    small = trained_config()  # 30 users
    assert (small["batch_size"], small["lr"], small["lr_decay"]) == (256, 1e-3, 1.0)
    monkeypatch.setattr(defaults, "LARGE_DATASET_USERS", 30)
    large = trained_config()
    assert (large["batch_size"], large["lr"], large["lr_decay"]) == (1024, 1e-2, 0.5)
    assert main(["--db", str(db.path), "train", "--dataset", "d", "--strategy", "id", "--epochs", "1", "--hidden",
                 "16", "--device", "cpu", "--lr-decay", "0.8", "--json"]) == 0
    assert get_run(db, json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]).config["lr_decay"] == 0.8
    assert main(["--db", str(db.path), "train", "--dataset", "d", "--strategy", "id", "--lr-decay", "0",
                 "--device", "cpu"]) == 2                                       # refused in one line, nothing run
    assert "lr_decay must be" in capsys.readouterr().err


def test_a_resumed_run_keeps_its_batch_and_lr_when_the_defaults_change(db, dataset, monkeypatch):
    """A run stopped before the size rule picked other defaults resumes with what it started with (its checkpoint
    would refuse another batch size)."""
    from dff_core.train import defaults
    from jobs.workflows import run_training

    calls = {"n": 0}

    def stop_after_a_while() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    first = run_training(db, "d", "id", settings={"epochs": 3, "hidden": 16, "device": "cpu"}, seed=1,
                         should_stop=stop_after_a_while)
    assert first.status == "cancelled" and (first.config["batch_size"], first.config["lr"]) == (256, 1e-3)
    monkeypatch.setattr(defaults, "LARGE_DATASET_USERS", 1)  # the defaults now say 1024 / 1e-2 for this dataset
    resumed = run_training(db, "d", "id", settings={"epochs": 3, "hidden": 16, "device": "cpu"}, seed=1,
                           run_id=first.id)
    assert resumed.status == "done" and (resumed.config["batch_size"], resumed.config["lr"]) == (256, 1e-3)
