"""Training: objective data, DFF finding the informative layer, reproducibility, checkpoint/resume."""
import numpy as np
import pytest
import torch

from data_helpers import strip_times
from dff_core.data.split import leave_one_out
from dff_core.eval import popularity_baseline
from dff_core.train import TrainConfig, TrainingBatches, train
from dff_core.train.trainer import CHECKPOINT_NAME

SIGNAL_LAYER = 2


def cluster_data(seed=0, n_clusters=20, per_cluster=30, users=250, seq_len=6, layers=4, dim=16, noise=0.1):
    """Items in clusters, each user consumes one cluster; only feature layer ``SIGNAL_LAYER`` holds the
    cluster centroid (+ small noise), the other layers are pure noise. ~1.7 training interactions
    per item, so IDs alone learn little about most items."""
    rng = np.random.default_rng(seed)
    n_items = n_clusters * per_cluster
    cluster = np.repeat(np.arange(n_clusters), per_cluster)
    seqs = [rng.choice(np.nonzero(cluster == rng.integers(n_clusters))[0], size=seq_len, replace=False)
            for _ in range(users)]
    feats = rng.normal(size=(n_items, layers, dim)).astype(np.float32)
    feats[:, SIGNAL_LAYER] = rng.normal(size=(n_clusters, dim))[cluster] + noise * rng.normal(size=(n_items, dim))
    return leave_one_out(seqs, n_items), feats


def small_cfg(**kw):
    base = dict(epochs=4, batch_size=16, lr=3e-3, hidden=16, blocks=1, heads=1, max_len=8, dropout=0.2,
                patience=10, log_every=2, num_threads=1)  # 1 thread: tiny model, shared CI cores
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def small():
    data, feats = cluster_data(seed=1, n_clusters=6, per_cluster=10, users=60, seq_len=7)
    return data, feats


def test_training_batches_shift_and_truncate():
    data = leave_one_out([np.arange(10), np.array([3, 4, 5]), np.array([7, 8, 9, 1])], num_items=12)
    b = TrainingBatches.build(data, max_len=4)
    # user 0: train prefix 0..7 -> inputs 4..7 / targets 5..8 (model indices +1)
    assert b.inputs[0].tolist() == [4, 5, 6, 7] and b.targets[0].tolist() == [5, 6, 7, 8]
    # user 1 (train [3]) has no training pair and is dropped; user 2: train [7, 8]
    assert len(b) == 2
    assert b.inputs[1].tolist() == [0, 0, 0, 8] and b.targets[1].tolist() == [0, 0, 0, 9]
    assert b.lengths.tolist() == [4, 1]
    # every row holds only items of its user's training prefix: validation / test items never appear
    for row, u in enumerate([0, 2]):
        seen = set((torch.cat([b.inputs[row], b.targets[row]]) - 1).tolist()) - {-1}
        assert seen <= set(data.train[u].tolist())
        assert not seen & {int(data.val_target[u]), int(data.test_target[u])}


def test_dff_finds_the_informative_layer_and_beats_id():
    data, feats = cluster_data(seed=0)
    cfg = dict(epochs=25, batch_size=64, lr=3e-3, hidden=32, blocks=1, max_len=10, patience=25, num_threads=1)
    res_id = train(data, TrainConfig(strategy="id", **cfg))
    res_dff = train(data, TrainConfig(strategy="dff", **cfg), features=feats)
    w = res_dff.layer_weights
    assert max(w, key=w.get) == SIGNAL_LAYER, w
    assert w[SIGNAL_LAYER] > 1.5 * max(v for k, v in w.items() if k != SIGNAL_LAYER)
    assert res_dff.test["NDCG@10"] > 1.4 * res_id.test["NDCG@10"], (res_dff.test, res_id.test)
    assert res_id.test["NDCG@10"] > popularity_baseline(data, "test").metrics["NDCG@10"]
    assert 0.0 < res_dff.gate_mean < 1.0 and res_id.gate_mean is None
    assert res_dff.test_buckets["cold"]["users"] + res_dff.test_buckets["warm"]["users"] == data.num_users


def test_dff_weights_leave_uniform_one_signal_layer_of_eight():
    """One of 8 layers carries the signal: with the default settings DFF must put most of its weight on it
    (>= 0.5; measured 0.75, uniform = 0.125) and rank at least as well as gate fusion of that layer alone (0.01
    NDCG@10 tolerance; measured 0.169 vs 0.166). With the shared learning rate (layer_lr_mult=1) the weight stays
    at 0.17 and NDCG@10 at 0.053, near the gated mean of all 8 layers (0.040): this test fails there."""
    data, feats = cluster_data(seed=0, layers=8)
    cfg = dict(epochs=15, batch_size=64, lr=3e-3, hidden=32, blocks=1, max_len=10, patience=15, num_threads=1)
    alone = train(data, TrainConfig(strategy="gate", layers=[SIGNAL_LAYER], **cfg), features=feats)
    mean = train(data, TrainConfig(strategy="gate", **cfg), features=feats)  # gate over several layers = their mean
    dff = train(data, TrainConfig(strategy="dff", **cfg), features=feats)
    w = dff.layer_weights
    assert len(w) == 8 and sum(w.values()) == pytest.approx(1.0)
    assert w[SIGNAL_LAYER] >= 0.5, w
    assert dff.test["NDCG@10"] >= alone.test["NDCG@10"] - 0.01, (dff.test, alone.test)
    assert dff.test["NDCG@10"] > 2 * mean.test["NDCG@10"], (dff.test, mean.test)


def test_layer_logits_get_their_own_learning_rate_and_no_decay():
    from dff_core.train.trainer import build_model, param_groups

    cfg = TrainConfig(strategy="dff", lr=2e-3, weight_decay=0.1, layer_lr_mult=25, hidden=8)
    model = build_model(12, cfg, np.random.default_rng(0).normal(size=(12, 3, 4)))
    groups = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay).param_groups
    assert [g["lr"] for g in groups] == [2e-3, pytest.approx(0.05)]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert groups[1]["params"] == [model.item_encoder.layer_logits]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    # other strategies: one group; probe start from scores; bad settings refused
    gate = TrainConfig(strategy="gate", hidden=8)
    assert len(param_groups(build_model(12, gate, np.ones((12, 3, 4))), gate)) == 1
    probe = TrainConfig(strategy="dff", hidden=8, layer_init="probe", layer_scores=[1.0, 3.0, 2.0])
    w = build_model(12, probe, np.random.default_rng(0).normal(size=(12, 3, 4))).item_encoder.layer_weights()
    assert max(w, key=w.get) == 1 and min(w, key=w.get) == 0
    with pytest.raises(ValueError, match="needs layer_scores"):
        build_model(12, TrainConfig(strategy="dff", hidden=8, layer_init="probe"), np.ones((12, 3, 4)))
    with pytest.raises(ValueError, match="layer_init"):
        TrainConfig(layer_init="best").validate()
    with pytest.raises(ValueError, match="layer_lr_mult"):
        TrainConfig(layer_lr_mult=-1).validate()


def test_same_seed_same_results_and_events(small):
    data, feats = small
    events = []
    a = train(data, small_cfg(strategy="dff"), feats, callback=events.append)
    b = train(data, small_cfg(strategy="dff"), feats)
    assert strip_times(a.history) == strip_times(b.history)
    assert a.test == b.test and a.val == b.val and a.layer_weights == b.layer_weights
    c = train(data, small_cfg(strategy="dff", seed=7), feats)
    assert strip_times(c.history) != strip_times(a.history)
    # events: steps every log_every and the last step of each epoch, one epoch event per epoch
    steps = -(-sum(len(s) >= 2 for s in data.train) // small_cfg().batch_size)
    assert steps == 4
    step_events = [e for e in events if e["type"] == "step"]
    epoch_events = [e for e in events if e["type"] == "epoch"]
    assert [e["step"] for e in step_events if e["epoch"] == 1] == sorted({*range(2, steps + 1, 2), steps})
    assert all(e["steps"] == steps and np.isfinite(e["loss"]) for e in step_events)
    assert [e["epoch"] for e in epoch_events] == [1, 2, 3, 4] == [r["epoch"] for r in a.history]
    for e in epoch_events:
        assert set(e) >= {"type", "epoch", "loss", "val", "layer_weights", "gate_mean", "seconds"}
        assert set(e["val"]) == {"HR@10", "HR@20", "NDCG@10", "NDCG@20", "MRR"}
        assert sum(e["layer_weights"].values()) == pytest.approx(1.0)
    assert a.epochs_run == 4 and not a.cancelled and not a.stopped_early
    assert a.best_epoch == 1 + int(np.argmax([r["val"]["NDCG@10"] for r in a.history]))
    assert a.val["NDCG@10"] == pytest.approx(a.history[a.best_epoch - 1]["val"]["NDCG@10"])


def test_resume_after_mid_epoch_cancel_equals_uninterrupted(small, tmp_path):
    data, feats = small
    full = train(data, small_cfg(strategy="gate"), feats, checkpoint_dir=tmp_path / "full")
    calls = {"n": 0}

    def stop_after_6_steps():  # in the middle of epoch 2 (4 steps per epoch)
        calls["n"] += 1
        return calls["n"] > 6

    part = train(data, small_cfg(strategy="gate"), feats, checkpoint_dir=tmp_path / "run",
                 should_stop=stop_after_6_steps)
    assert part.cancelled and part.test is None and part.epochs_run == 1
    assert (tmp_path / "run" / CHECKPOINT_NAME).exists()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name != CHECKPOINT_NAME]  # no temp files left
    resumed = train(data, small_cfg(strategy="gate"), feats, checkpoint_dir=tmp_path / "run")
    assert not resumed.cancelled
    assert strip_times(resumed.history) == strip_times(full.history)
    assert resumed.test == full.test and resumed.val == full.val and resumed.best_epoch == full.best_epoch


def test_resume_after_kill_at_epoch_end_equals_uninterrupted(small, tmp_path):
    data, feats = small
    full = train(data, small_cfg(strategy="dff"), feats)

    def die_after_epoch_2(event):
        if event["type"] == "epoch" and event["epoch"] == 2:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train(data, small_cfg(strategy="dff"), feats, checkpoint_dir=tmp_path, callback=die_after_epoch_2)
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert saved["state"]["epoch"] == 2
    assert not any("feats" in k for k in saved["model"])  # frozen features are not checkpointed
    resumed = train(data, small_cfg(strategy="dff"), feats, checkpoint_dir=tmp_path)
    assert strip_times(resumed.history) == strip_times(full.history)
    assert resumed.test == full.test and resumed.layer_weights == full.layer_weights
    # a finished run resumes to the same result without training again
    again = train(data, small_cfg(strategy="dff"), feats, checkpoint_dir=tmp_path)
    assert again.test == full.test and strip_times(again.history) == strip_times(full.history)
    with pytest.raises(ValueError, match="config differs"):
        train(data, small_cfg(strategy="dff", lr=1e-2), feats, checkpoint_dir=tmp_path)


def test_early_stopping_keeps_best_epoch(small):
    data, _ = small
    # lr = 0: the validation metric never improves after the first evaluation
    res = train(data, small_cfg(strategy="id", lr=0.0, epochs=10, patience=2))
    assert res.stopped_early and res.epochs_run == 3 and res.best_epoch == 1
    assert res.val == pytest.approx(res.history[0]["val"])
    # eval_every=2: only even epochs (and the last) are validated
    res2 = train(data, small_cfg(strategy="id", epochs=3, eval_every=2))
    assert [r["val"] is not None for r in res2.history] == [False, True, True]


def test_feature_strategy_without_features_fails(small):
    data, _ = small
    with pytest.raises(ValueError, match="needs features"):
        train(data, small_cfg(strategy="dff"))
    with pytest.raises(ValueError, match="unknown strategy"):
        train(data, small_cfg(strategy="bogus"))


def test_two_databases_in_one_folder_keep_their_checkpoints_apart(tmp_path):
    """Run ids restart in every database: run 1 of one file must never resume from run 1 of another, nor from
    a leftover of a deleted file of the same name."""
    from data_helpers import write_generic
    from jobs.datasets import import_generic
    from jobs.neighbours.models import checkpoint_path
    from jobs.workflows import run_training
    from storage import Database

    settings = {"epochs": 2, "hidden": 16, "batch_size": 64, "max_len": 10}
    small, big = Database(tmp_path / "small.duckdb"), Database(tmp_path / "big.duckdb")
    import_generic(small, "d", *write_generic(tmp_path / "s", n_users=30, n_items=20))
    import_generic(big, "d", *write_generic(tmp_path / "b", n_users=40, n_items=35))
    a = run_training(small, "d", "id", settings=settings, seed=1)
    b = run_training(big, "d", "id", settings=settings, seed=1)   # same run id, other item count: no clash
    assert a.id == b.id == 1 and a.status == b.status == "done"
    assert checkpoint_path(small, 1) != checkpoint_path(big, 1)
    assert checkpoint_path(small, 1).exists() and checkpoint_path(big, 1).exists()
    assert torch.load(checkpoint_path(big, 1), weights_only=True)["num_items"] == 35

    # the small file deleted and made again: its new run 1 starts fresh instead of resuming the old one
    small.path.unlink()
    Database._migrated.discard(str(small.path.resolve()))
    again = Database(tmp_path / "small.duckdb")
    import_generic(again, "d", *write_generic(tmp_path / "s2", n_users=30, n_items=25))
    c = run_training(again, "d", "id", settings={**settings, "epochs": 1}, seed=1)
    assert c.id == 1 and c.status == "done" and c.epochs_run == 1
    assert torch.load(checkpoint_path(again, 1), weights_only=True)["num_items"] == 25


# ------------------------------------------------------------------------------------------- endings

def test_three_endings_and_their_summary_twin(small):
    """Patience runs out -> early_stopped; the cap while improving -> capped_improving; cancel -> cancelled.
    ``endings.from_summary`` (used for stored rows and old CSVs) agrees with the trainer on each."""
    from dff_core import endings

    data, feats = small
    stopped = train(data, small_cfg(strategy="id", lr=0.0, epochs=10, patience=2))     # never improves after 1
    capped = train(data, small_cfg(strategy="id", epochs=2, patience=5))                # 2 < patience evaluations
    cancelled = train(data, small_cfg(strategy="id"), should_stop=lambda: True)
    assert (stopped.ending, stopped.epochs_run, stopped.best_epoch) == (endings.EARLY_STOPPED, 3, 1)
    assert (capped.ending, capped.epochs_run) == (endings.CAPPED_IMPROVING, 2) and capped.best_epoch >= 1
    assert cancelled.ending == endings.CANCELLED and cancelled.cancelled and cancelled.test is None
    # early stopping off: converged = no improvement over the last CONVERGENCE_WINDOW evaluations
    off_flat = train(data, small_cfg(strategy="id", lr=0.0, epochs=endings.CONVERGENCE_WINDOW + 1, patience=0))
    off_short = train(data, small_cfg(strategy="id", lr=0.0, epochs=3, patience=0))
    assert off_flat.ending == endings.CAPPED_CONVERGED and off_flat.epochs_run == endings.CONVERGENCE_WINDOW + 1
    assert off_short.ending == endings.CAPPED_IMPROVING
    # eval_every=2: patience counts evaluations (epochs 2, 4, 6 ...), not epochs
    sparse = train(data, small_cfg(strategy="id", lr=0.0, epochs=9, eval_every=2, patience=2))
    assert (sparse.ending, sparse.best_epoch, sparse.epochs_run) == (endings.EARLY_STOPPED, 2, 6)
    for res, cfg in ((stopped, dict(epochs=10, patience=2)), (capped, dict(epochs=2, patience=5)),
                     (off_flat, dict(epochs=endings.CONVERGENCE_WINDOW + 1, patience=0)),
                     (off_short, dict(epochs=3, patience=0)), (sparse, dict(epochs=9, patience=2, eval_every=2))):
        assert endings.from_summary(res.epochs_run, res.best_epoch, **cfg) == res.ending


def test_evaluations_after_and_cap_warning():
    from dff_core import endings

    assert endings.evaluations_after(best_epoch=4, epochs_run=9, epochs=9, eval_every=2) == 3   # 6, 8, 9
    assert endings.from_summary(15, 15, epochs=15, patience=3) == endings.CAPPED_IMPROVING
    assert endings.from_summary(15, 12, epochs=15, patience=3) == endings.EARLY_STOPPED  # stopped at the cap
    assert endings.from_summary(11, 6, epochs=15, patience=5) == endings.EARLY_STOPPED
    assert endings.cap_warning(200, 5, [20, 33, 41]) is None
    assert "median 33, up to 41" in endings.cap_warning(15, 5, [20, 33, 41])
    assert "low" in endings.cap_warning(10, 5, []) and endings.cap_warning(200, 5, []) is None
    assert "Early stopping is off" in endings.cap_warning(200, 0, [20])


def _assert_resumes_identically(data, feats, cfg, ckpt_dir, full, kill_after: int) -> None:
    """A run of ``cfg`` killed after epoch ``kill_after`` and resumed from ``ckpt_dir`` ends as ``full`` did."""
    def die(event):
        if event["type"] == "epoch" and event["epoch"] == kill_after:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train(data, cfg, feats, checkpoint_dir=ckpt_dir, callback=die)
    resumed = train(data, cfg, feats, checkpoint_dir=ckpt_dir)
    assert strip_times(resumed.history) == strip_times(full.history) and resumed.test == full.test


def test_lr_decays_after_each_evaluation_without_improvement_and_resumes_identically(small, tmp_path):
    data, feats = small
    cfg = dict(strategy="dff", epochs=8, lr=3e-2, lr_decay=0.5, patience=0)  # a high lr: plateaus come early
    full = train(data, small_cfg(**cfg), feats, checkpoint_dir=tmp_path / "full")
    vals = [h["val"]["NDCG@10"] for h in full.history]
    misses = sum(v <= max(vals[:i], default=-1.0) for i, v in enumerate(vals))    # evaluations not beating the best
    assert 0 < misses < len(vals)
    groups = torch.load(tmp_path / "full" / CHECKPOINT_NAME, weights_only=True)["optimizer"]["param_groups"]
    assert groups[0]["lr"] == pytest.approx(3e-2 * 0.5 ** misses)                  # the model's group ...
    assert groups[1]["lr"] == pytest.approx(3e-2 * small_cfg().layer_lr_mult * 0.5 ** misses)  # ... and DFF's logits

    _assert_resumes_identically(data, feats, small_cfg(**cfg), tmp_path / "run", full, kill_after=5)
    constant = train(data, small_cfg(**{**cfg, "lr_decay": 1.0}), feats)
    assert strip_times(constant.history) != strip_times(full.history)               # the decay changed training
    with pytest.raises(ValueError, match="lr_decay"):
        small_cfg(lr_decay=0.0).validate()


def test_feature_lr_mult_gives_the_content_side_its_own_rate_and_resumes_identically(small, tmp_path):
    """The item encoder's shared content parameters (projection, gate) learn at lr x feature_lr_mult; the ID table,
    the transformer and DFF's logits keep theirs; at 1 there is no extra group (older checkpoints resume)."""
    from dff_core.train.trainer import build_model, param_groups

    data, feats = small
    cfg = small_cfg(strategy="dff", lr=1e-2, feature_lr_mult=0.3)
    model = build_model(data.num_items, cfg, feats)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups(model, cfg)
    assert [g.get("lr") for g in groups] == [None, pytest.approx(1e-2 * cfg.layer_lr_mult), pytest.approx(3e-3)]
    content = sorted(names[id(p)] for p in groups[2]["params"])
    assert content and all(n.startswith(("item_encoder.proj.", "item_encoder.gate.")) for n in content)
    assert {"item_encoder.emb", "item_encoder.layer_logits"}.isdisjoint(content)
    assert len(param_groups(model, small_cfg(strategy="dff", feature_lr_mult=1.0))) == 2
    id_model = build_model(data.num_items, small_cfg(strategy="id"), None)
    assert len(param_groups(id_model, small_cfg(strategy="id", feature_lr_mult=0.3))) == 1   # nothing to slow down

    run = dict(strategy="gate", epochs=4, lr=1e-2, feature_lr_mult=0.3, patience=0)
    full = train(data, small_cfg(**run), feats, checkpoint_dir=tmp_path / "full")
    saved = torch.load(tmp_path / "full" / CHECKPOINT_NAME, weights_only=True)["optimizer"]["param_groups"]
    assert [g["lr"] for g in saved] == [pytest.approx(1e-2), pytest.approx(3e-3)]

    _assert_resumes_identically(data, feats, small_cfg(**run), tmp_path / "run", full, kill_after=2)
    assert strip_times(train(data, small_cfg(**{**run, "feature_lr_mult": 1.0}), feats).history) != \
        strip_times(full.history)
    with pytest.raises(ValueError, match="feature_lr_mult"):
        small_cfg(feature_lr_mult=-1.0).validate()
