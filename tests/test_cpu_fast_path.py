"""Training at the CPU's floor: length-bucketed batches, mask-free ranking, the chunked full softmax, bfloat16
on CPU, gBCE, and the cost of a study up front. Each test compares against the plain version it replaces."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data_helpers import strip_times
from dff_core.data.split import leave_one_out
from dff_core.eval.evaluate import EvalInputs, evaluate, popularity_baseline
from dff_core.eval.metrics import rank_excluding, rank_of_targets
from dff_core.train import TrainConfig, TrainingBatches, train
from dff_core.train.batching import epoch_plan
from dff_core.train.losses import full_softmax_loss, gbce_beta, logq_softmax_loss
from dff_core.train.negatives import shared_negatives
from test_train import SIGNAL_LAYER, cluster_data, small_cfg


# ------------------------------------------------------------------------------------------ batches

@pytest.mark.parametrize("batching", ["random", "length"])
def test_every_row_once_per_epoch_and_reproducible(batching):
    lengths = torch.from_numpy(np.random.default_rng(0).integers(1, 60, size=1003))
    a = epoch_plan(lengths, 64, batching, torch.Generator().manual_seed(5))
    b = epoch_plan(lengths, 64, batching, torch.Generator().manual_seed(5))
    order, ends = a
    assert torch.equal(order, b[0]) and torch.equal(ends, b[1])             # same seed, same epoch
    assert sorted(order.tolist()) == list(range(1003))                      # every row exactly once
    assert ends[-1] == 1003 and len(ends) == 16 and (ends.diff() > 0).all()
    sizes = torch.diff(ends, prepend=torch.tensor([0]))
    if batching == "random":
        assert sizes.tolist() == [64] * 15 + [43]
    else:  # equal shares of the targets, not of the rows: short rows come many to a batch
        per_batch = [int(lengths[order[e - n:e]].sum()) for n, e in zip(sizes.tolist(), ends.tolist())]
        assert max(per_batch) <= 1.1 * int(lengths.sum()) / 16 + int(lengths.max())
        assert max(sizes) > 2 * min(sizes)
    c = epoch_plan(lengths, 64, batching, torch.Generator().manual_seed(6))
    assert not torch.equal(order, c[0])


def test_length_batches_pad_little_and_are_shuffled():
    rng = np.random.default_rng(1)
    lengths = torch.from_numpy(np.minimum(rng.geometric(0.15, size=5000), 50))  # short, skewed (like MicroLens)
    gen = torch.Generator().manual_seed(0)

    def padded(batching):
        order, ends = epoch_plan(lengths, 256, batching, gen)
        starts = [0] + ends[:-1].tolist()
        return sum(int(lengths[order[s:e]].max()) * (e - s) for s, e in zip(starts, ends.tolist())), order, ends

    rand, _, _ = padded("random")
    buck, order, ends = padded("length")
    real = int(lengths.sum())
    assert buck <= 1.3 * real < rand / 3, (buck, real, rand)  # the tail batch spans lengths 20-50
    maxes = [int(lengths[order[s:e]].max()) for s, e in zip([0] + ends[:-1].tolist(), ends.tolist())]
    assert maxes != sorted(maxes)                                            # batch order is shuffled


def test_length_batches_train_every_target_once(small_data):
    """The targets a length-bucketed epoch trains on are exactly the training pairs, each once."""
    data, _ = small_data
    b = TrainingBatches.build(data, max_len=8)
    order, ends = epoch_plan(b.lengths, 7, "length", torch.Generator().manual_seed(0))
    seen = []
    for s, e in zip([0] + ends[:-1].tolist(), ends.tolist()):
        idx = order[s:e]
        width = int(b.lengths[idx].max())
        tgt = b.targets[idx, -width:]
        assert int((b.targets[idx] > 0).sum()) == int((tgt > 0).sum())     # trimming drops no target
        seen += [(int(r), int(t)) for r, row in zip(idx, tgt) for t in row if t > 0]
    expect = [(r, int(t)) for r in range(len(b)) for t in b.targets[r] if t > 0]
    assert sorted(seen) == sorted(expect)


@pytest.fixture(scope="module")
def small_data():
    return cluster_data(seed=1, n_clusters=6, per_cluster=10, users=60, seq_len=7)


def test_length_batching_resumes_mid_epoch_exactly(small_data, tmp_path):
    data, feats = small_data
    cfg = lambda: small_cfg(strategy="dff", batching="length")  # noqa: E731
    whole = train(data, cfg(), feats, checkpoint_dir=tmp_path / "whole")
    calls = {"n": 0}

    def stop_mid_epoch_2():
        calls["n"] += 1
        return calls["n"] > 6

    part = train(data, cfg(), feats, checkpoint_dir=tmp_path / "run", should_stop=stop_mid_epoch_2)
    assert part.cancelled and part.epochs_run == 1
    resumed = train(data, cfg(), feats, checkpoint_dir=tmp_path / "run")
    assert strip_times(resumed.history) == strip_times(whole.history)
    assert resumed.test == whole.test and resumed.val == whole.val


# ------------------------------------------------------------------------------------------ ranking

def _reference_ranks(scores, targets, seen_lists):
    """The dense-mask protocol as it was: rank_of_targets with the seen items excluded."""
    return rank_of_targets(scores, targets, seen_lists)


@pytest.mark.parametrize("dtype,count", [(torch.float32, "numba"), (torch.float32, "float"), (torch.float64, "float"),
                                         (torch.float32, "int")])
def test_mask_free_ranks_equal_the_masked_ranks_with_ties_and_long_histories(dtype, count, monkeypatch):
    from dff_core import cpu_kernels
    from dff_core.eval import metrics

    assert cpu_kernels.usable()                                                 # numba and its omp layer load here
    if count != "numba":                                                        # torch's comparison passes
        monkeypatch.setattr(cpu_kernels, "_loops", False)
    if count == "int":                                                          # rows too long to count in floats
        monkeypatch.setattr(metrics, "FLOAT_COUNT_LIMIT", 0)
    rng = np.random.default_rng(0)
    B, N = 300, 500
    scores = torch.from_numpy(rng.integers(0, 6, size=(B, N)).astype(np.float32)).to(dtype)  # many ties
    targets = rng.integers(0, N, size=B)
    seen = []
    for r in range(B):
        n = int(rng.choice([0, 1, 5, 80, 400]))                                 # empty to longer than most
        items = rng.integers(0, N, size=n)                                      # duplicates allowed
        if r % 7 == 0 and n:
            items[0] = targets[r]                                               # the target in the history
        seen.append(items)
    lens = np.array([len(s) for s in seen])
    indptr = np.concatenate([[0], np.cumsum(lens)])
    from dff_core.eval.evaluate import _exclusions
    items, excl_ptr = _exclusions(np.concatenate(seen).astype(np.int64), indptr, targets, N)
    fast = rank_excluding(scores, torch.from_numpy(targets), torch.from_numpy(items), torch.from_numpy(excl_ptr))
    ref = _reference_ranks(scores, targets, seen)
    assert np.array_equal(fast, ref)
    assert fast.min() >= 0 and (fast > 0).mean() > 0.9                         # ties counted against the target


@pytest.mark.parametrize("kernel", [True, False])
def test_mask_free_ranks_refuse_non_finite_scores(kernel, monkeypatch):
    from dff_core import cpu_kernels

    monkeypatch.setattr(cpu_kernels, "_loops", cpu_kernels._loops if kernel and cpu_kernels.usable() else False)
    scores = torch.zeros(3, 10)
    scores[1, 4] = float("nan")
    with pytest.raises(ValueError, match="non-finite scores"):
        rank_excluding(scores, torch.tensor([0, 1, 2]), torch.zeros(0, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    big = torch.full((2, 10), 3e38)  # finite, but the row sums overflow: not an error
    assert rank_excluding(big, torch.tensor([0, 1]), torch.zeros(0, dtype=torch.long),
                          torch.zeros(3, dtype=torch.long)).tolist() == [9, 9]


def test_final_validation_reuses_the_best_epochs_evaluation(small_data, monkeypatch):
    """The best state's validation was computed when it was the best: the end of a run does not compute it again,
    and what it reports is what evaluating the returned model gives."""
    import dff_core.train.trainer as trainer

    data, _ = small_data
    calls = []
    real = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    res = train(data, small_cfg(strategy="id", epochs=12, patience=2, lr=3e-2))
    assert res.stopped_early and res.best_epoch < res.epochs_run
    assert calls.count("val") == res.epochs_run and calls.count("test") == 1   # one validation an epoch, no more
    best = next(r["val"] for r in res.history if r["epoch"] == res.best_epoch)
    assert res.val == best == evaluate(res.model, data, "val").metrics


def test_evaluate_equals_the_masked_protocol_on_a_trained_model(small_data):
    data, _ = small_data
    res = train(data, small_cfg(strategy="id", epochs=2))
    model = res.model
    for split in ("val", "test"):
        got = evaluate(model, data, split, batch_size=13)
        inputs = EvalInputs.build(data, split, model.cfg.max_len)
        model.eval()
        with torch.no_grad():
            scores = model.predict(inputs.seqs, model.item_table())
        seen = [inputs.seen_items[inputs.seen_indptr[i]:inputs.seen_indptr[i + 1]] for i in range(len(inputs.targets))]
        ref = np.empty(len(seen), dtype=np.int64)
        ref[inputs.order] = _reference_ranks(scores, inputs.targets, seen)
        assert np.array_equal(got.ranks, ref)


def test_popularity_ranks_equal_the_masked_protocol():
    """Popularity scores tie a lot (counts): the binary-search count must agree with the dense-mask ranks."""
    rng = np.random.default_rng(3)
    seqs = [rng.choice(40, size=int(rng.integers(3, 30)), replace=False) for _ in range(200)]
    data = leave_one_out(seqs, 40)
    for split in ("val", "test"):
        got = popularity_baseline(data, split)
        inputs = EvalInputs.build(data, split, 1)
        scores = torch.as_tensor(data.train_item_counts(), dtype=torch.float32).expand(len(inputs.targets), -1)
        seen = [inputs.seen_items[inputs.seen_indptr[i]:inputs.seen_indptr[i + 1]] for i in range(len(inputs.targets))]
        ref = np.empty(len(seen), dtype=np.int64)
        ref[inputs.order] = _reference_ranks(scores, inputs.targets, seen)
        assert np.array_equal(got.ranks, ref)


def test_popularity_baseline_is_computed_once_per_split(small_data):
    data, _ = small_data
    a = popularity_baseline(data, "test")
    b = popularity_baseline(data, "test")
    assert b is a                                                           # the same result object: cached
    assert popularity_baseline(data, "val") is not a
    assert np.array_equal(a.ranks, popularity_baseline(data, "test", cold_threshold=1).ranks)


# ------------------------------------------------------------------------------------------ losses

def test_chunked_full_softmax_equals_cross_entropy_in_value_and_gradients():
    torch.manual_seed(0)
    P, N, d = 700, 1300, 16
    h0, t0 = torch.randn(P, d), torch.randn(N + 1, d)
    tg = torch.randint(1, N + 1, (P,))
    h, table = h0.clone().requires_grad_(), t0.clone().requires_grad_()
    ref = F.cross_entropy(h @ table[1:].T, tg - 1)
    ref.backward()
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        h2, table2 = h0.clone().requires_grad_(), t0.clone().requires_grad_()
        loss = full_softmax_loss(h2, tg, table2, dtype, chunk=128)          # several chunks, a short last one
        loss.backward()
        assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=tol)
        for got, want in ((h2.grad, h.grad), (table2.grad, table.grad)):
            assert float((got - want).abs().max()) <= tol * float(want.abs().max())
        assert float(table2.grad[0].abs().max()) == 0.0                      # the padding row gets nothing


def test_chunked_full_softmax_handles_logits_beyond_exp_range_and_reuses_its_workspace():
    # logits of +-300 overflow exp() in float32: the blocks that do are redone with their row maxima
    torch.manual_seed(1)
    P, N, d = 300, 500, 8
    h0, t0 = torch.randn(P, d) * 10, torch.randn(N + 1, d) * 10
    h0[:100] *= 4                                             # the first block's rows overflow, the others do not
    tg = torch.randint(1, N + 1, (P,))
    ref = F.cross_entropy(h0 @ t0[1:].T, tg - 1)
    assert float((h0 @ t0[1:].T).abs().max()) > 200
    grads = []
    for _ in range(2):                                        # the second call runs on the reused buffers
        h, table = h0.clone().requires_grad_(), t0.clone().requires_grad_()
        loss = full_softmax_loss(h, tg, table, torch.float32, chunk=128)
        loss.backward()
        assert torch.isfinite(loss) and float(loss) == pytest.approx(float(ref), rel=1e-5)
        grads.append(h.grad)
    assert torch.equal(grads[0], grads[1])
    with torch.no_grad():                                     # a forward without backward keeps its buffer ...
        a = full_softmax_loss(h0, tg, t0, torch.bfloat16, chunk=128)
        b = full_softmax_loss(h0, tg, t0, torch.bfloat16, chunk=128)   # ... and the next one gets a fresh one
    assert float(a) == float(b) and float(a) == pytest.approx(float(ref), rel=2e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_full_softmax_gradient_stays_finite_when_only_the_backward_product_would_overflow(dtype):
    # a logit of 85 keeps exp's sum finite (8e36 < 3.4e38) but e @ W with |W| = 100 would be 8e38: inf, then NaN
    # downstream (seen as a DFF run diverging at lr 6e-3); such a block must be shifted by its maxima too
    torch.manual_seed(5)
    P, N, d = 40, 300, 4
    table0 = torch.randn(N + 1, d)
    table0[7] = torch.tensor([100.0, 0.0, 0.0, 0.0])
    h0 = torch.randn(P, d) * 0.1
    h0[:5, 0] = 0.85                                           # rows whose logit for item 7 is ~85
    tg = torch.randint(1, N + 1, (P,))
    h, table = h0.clone().requires_grad_(), table0.clone().requires_grad_()
    ref = F.cross_entropy(h @ table[1:].T, tg - 1)
    ref.backward()
    h2, table2 = h0.clone().requires_grad_(), table0.clone().requires_grad_()
    loss = full_softmax_loss(h2, tg, table2, dtype, chunk=16)
    loss.backward()
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert torch.isfinite(h2.grad).all() and torch.isfinite(table2.grad).all()
    assert float(loss) == pytest.approx(float(ref), rel=tol)
    for got, want in ((h2.grad, h.grad), (table2.grad, table.grad)):
        assert float((got - want).abs().max()) <= tol * float(want.abs().max())


def test_logq_softmax_with_every_item_as_a_negative_is_the_full_softmax():
    torch.manual_seed(2)
    P, N, d = 200, 50, 8
    h, table = torch.randn(P, d), torch.randn(N + 1, d)
    tg = torch.randint(1, N + 1, (P,))
    every = torch.randperm(N) + 1                             # K = N: the correction log(N / K) is 0
    want = F.cross_entropy(h @ table[1:].T, tg - 1)
    assert float(logq_softmax_loss(h, tg, every, table, N)) == pytest.approx(float(want), rel=1e-5)


def test_logq_softmax_estimates_the_full_softmax_gradient_without_bias():
    # averaged over many draws of K negatives, the corrected loss's gradient on h approaches the full one
    torch.manual_seed(3)
    P, N, d, K = 40, 400, 8, 40
    h0, table = torch.randn(P, d) * 0.3, torch.randn(N + 1, d) * 0.3
    tg = torch.randint(1, N + 1, (P,))
    h = h0.clone().requires_grad_()
    F.cross_entropy(h @ table[1:].T, tg - 1).backward()
    full = h.grad.clone()
    gen, acc, plain = torch.Generator().manual_seed(0), torch.zeros_like(full), torch.zeros_like(full)
    for _ in range(400):
        neg = shared_negatives(N, K, gen)
        assert len(neg) == K and len(set(neg.tolist())) == K and int(neg.min()) >= 1 and int(neg.max()) <= N
        h = h0.clone().requires_grad_()
        logq_softmax_loss(h, tg, neg, table, N).backward()
        acc += h.grad / 400
        h = h0.clone().requires_grad_()                       # the same negatives without the correction
        logits = torch.cat([(h * table[tg]).sum(-1, keepdim=True), h @ table[neg].T], 1)
        logits[:, 1:] = logits[:, 1:].masked_fill(neg.unsqueeze(0) == tg.unsqueeze(1), float("-inf"))
        F.cross_entropy(logits, torch.zeros(P, dtype=torch.long)).backward()
        plain += h.grad / 400
    err, err_plain = float((acc - full).norm() / full.norm()), float((plain - full).norm() / full.norm())
    assert err < 0.05, err
    assert err_plain > 3 * err, (err, err_plain)              # uncorrected sampled softmax is biased


def test_gbce_beta_matches_the_paper():
    # alpha = k / (N - 1); t = 0 gives beta = 1 (plain BCE), t = 1 gives alpha (fully calibrated)
    assert gbce_beta(256, 19221, 0.0) == pytest.approx(1.0)
    assert gbce_beta(256, 19221, 1.0) == pytest.approx(256 / 19220)
    assert gbce_beta(256, 19221, 0.75) == pytest.approx(256 / 19220 * (0.75 * (1 - 19220 / 256) + 19220 / 256))


def test_sampled_objectives_find_the_planted_layer_as_full_softmax_does():
    data, feats = cluster_data(seed=0)
    cfg = dict(epochs=25, batch_size=64, lr=3e-3, hidden=32, blocks=1, max_len=10, patience=25, num_threads=1)
    full = train(data, TrainConfig(strategy="dff", **cfg), features=feats)
    sampled = {"gbce": dict(loss="gbce", negatives=64, batching="length"),
               "logq": dict(loss="logq", negatives=data.num_items // 4)}
    popularity = popularity_baseline(data, "test").metrics["NDCG@10"]
    for name, settings in sampled.items():
        res = train(data, TrainConfig(strategy="dff", **settings, **cfg), features=feats)
        for r in (full, res):
            w = r.layer_weights
            assert max(w, key=w.get) == SIGNAL_LAYER, (name, w)
            assert w[SIGNAL_LAYER] > 1.5 * max(v for k, v in w.items() if k != SIGNAL_LAYER)
        assert res.test["NDCG@10"] > 0.8 * full.test["NDCG@10"], (name, res.test, full.test)
        assert res.test["NDCG@10"] > 2 * popularity


# ------------------------------------------------------------------------------------------ bfloat16 on CPU

def test_cpu_bf16_keeps_features_in_bf16_and_trains_to_the_same_quality(monkeypatch):
    from dff_core.train.trainer import build_model

    monkeypatch.setenv("DFF_CPU_BF16", "1")
    data, feats = cluster_data(seed=0)
    model = build_model(data.num_items, TrainConfig(strategy="dff", amp="bf16", hidden=32), feats)
    assert model.item_encoder.feats.dtype == torch.bfloat16
    assert model.item_table().dtype == torch.float32
    assert build_model(data.num_items, TrainConfig(strategy="dff", hidden=32), feats).item_encoder.feats.dtype == torch.float32
    cfg = dict(epochs=25, batch_size=64, lr=3e-3, hidden=32, blocks=1, max_len=10, patience=25, num_threads=1)
    f32 = train(data, TrainConfig(strategy="dff", **cfg), features=feats)
    b16 = train(data, TrainConfig(strategy="dff", amp="bf16", **cfg), features=feats)
    w = b16.layer_weights
    assert max(w, key=w.get) == SIGNAL_LAYER
    assert b16.test["NDCG@10"] == pytest.approx(f32.test["NDCG@10"], rel=0.1)


def test_bf16_is_refused_on_a_cpu_without_it(monkeypatch):
    from dff_core.devices import amp_problem

    monkeypatch.setenv("DFF_CPU_BF16", "0")
    assert "native bfloat16" in amp_problem("bf16", torch.device("cpu"))
    assert amp_problem("none", torch.device("cpu")) is None
    monkeypatch.setenv("DFF_CPU_BF16", "1")
    assert amp_problem("bf16", torch.device("cpu")) is None


def test_layer_mix_gradient_equals_autograd():
    from dff_core.models.item_encoders import LayerMix

    torch.manual_seed(0)
    for n, d in ((300, 70), (301, 7), (150, 6)):              # N*D divisible by 8, odd, by 4 only: K = 8, 1, 4
        feats, a0, g = torch.randn(5, n, d), torch.softmax(torch.randn(5), 0), torch.randn(n, d)
        ref = a0.clone().requires_grad_()
        ((ref @ feats.view(5, -1)).view(n, d) * g).sum().backward()
        for dtype, tol in ((torch.float32, 1e-6), (torch.bfloat16, 1e-2)):
            a = a0.clone().requires_grad_()
            out = LayerMix.apply(a, feats.to(dtype))
            assert out.dtype == dtype and out.shape == (n, d)
            (out.float() * g).sum().backward()
            assert a.grad.shape == (5,) and a.grad.dtype == torch.float32
            assert float((a.grad - ref.grad).abs().max()) <= tol * float(ref.grad.abs().max()), (n, d, dtype)


def test_the_bfloat16_mix_loop_rounds_the_exact_sum_once(monkeypatch):
    from dff_core import cpu_kernels
    from dff_core.models.item_encoders import LayerMix

    if not cpu_kernels.usable():
        pytest.skip("no compiled CPU loops here")
    torch.manual_seed(1)
    for layers, m in ((31, 5000), (5, 1000), (1, 37), (4, 257), (7, 3)):   # groups of four and their tails
        z, a = (torch.randn(layers, m) * 3).bfloat16(), torch.softmax(torch.randn(layers), 0)
        exact = (a.double()[:, None] * z.double()).sum(0)
        got = cpu_kernels.mix_bf16(z, a)
        assert got.dtype == torch.bfloat16 and got.shape == (m,)
        # float32 sums of float32 products, rounded once: the float64 sum rounded, but for a rare tie of roundings
        assert float((got == exact.float().bfloat16()).float().mean()) > 0.995, (layers, m)
        assert ((got.double() - exact).abs() <= exact.abs() * 2 ** -7 + 1e-6).all()
    feats, a = torch.randn(6, 40, 9).bfloat16(), torch.softmax(torch.randn(6), 0)
    loops = LayerMix.apply(a, feats)
    monkeypatch.setattr(cpu_kernels, "_loops", False)                          # oneDNN's product, as before
    onednn = LayerMix.apply(a, feats)
    exact = torch.einsum("l,lnd->nd", a.double(), feats.double())
    assert ((loops.double() - exact).abs() <= exact.abs() * 2 ** -7 + 1e-6).all()
    # closer than oneDNN's product, which multiplies by bfloat16 weights
    assert (loops.double() - exact).abs().mean() < (onednn.double() - exact).abs().mean()


def test_the_bfloat16_layer_dots_keep_float32_sums(monkeypatch):
    """DFF's backward ``d a = feats @ g``: the loop's float32 products and chunk sums match float64 on the same
    bfloat16 inputs, where the blocked product rounded each partial sum to bfloat16 (large error when they cancel)."""
    from dff_core import cpu_kernels
    from dff_core.models.item_encoders import LayerMix

    if not cpu_kernels.usable():
        pytest.skip("no compiled CPU loops here")
    torch.manual_seed(2)
    for layers, m in ((31, 40_000), (5, 1000), (1, 37), (3, 1)):
        z, g = torch.randn(layers, m).bfloat16(), torch.randn(m).bfloat16()
        exact = z.double() @ g.double()
        got = cpu_kernels.bf16_layer_dots(z, g)
        assert got.dtype == torch.float32 and got.shape == (layers,)
        assert ((got.double() - exact).abs() <= 1e-5 * (z.double().abs() @ g.double().abs())).all(), (layers, m)
    feats, a0 = torch.randn(6, 400, 64).bfloat16(), torch.softmax(torch.randn(6), 0)
    g = torch.randn(400, 64).bfloat16()
    exact = feats.double().view(6, -1) @ g.double().view(-1)
    grads = []
    for loops in (True, False):
        if not loops:
            monkeypatch.setattr(cpu_kernels, "_loops", False)                  # the blocked product, as before
        a = a0.clone().requires_grad_()
        LayerMix.apply(a, feats).backward(g)
        grads.append(a.grad.double())
    assert (grads[0] - exact).abs().max() < 1e-4 * exact.abs().max()
    assert (grads[0] - exact).abs().max() < (grads[1] - exact).abs().max()


def test_amp_auto_resolves_per_device(monkeypatch):
    from dff_core.devices import resolve_amp

    monkeypatch.setenv("DFF_CPU_BF16", "1")
    assert resolve_amp("auto", torch.device("cpu")) == "bf16"
    assert resolve_amp("auto", torch.device("cuda", 0)) == "none"      # a GPU keeps its measured float32 path
    assert resolve_amp("none", torch.device("cpu")) == "none"
    monkeypatch.setenv("DFF_CPU_BF16", "0")
    assert resolve_amp("auto", torch.device("cpu")) == "none"


# ------------------------------------------------------------------------------------------ cost up front

def test_training_estimate_from_the_cost_model_and_from_measured_runs():
    from dff_core.estimates import DEFAULT_EPOCHS_TO_STOP, FEATURE_FACTOR, estimate_text, training_estimate

    size = dict(users=50_000, items=19_220, targets=208_562)
    model = training_estimate(["id", "dff", "dff"], amp="bf16", **size)
    per = model["seconds_per_epoch"]
    assert model["epochs"] == DEFAULT_EPOCHS_TO_STOP and not any(model["measured"].values())
    assert per["id"] == pytest.approx(8.3 + 1.9, rel=0.01)         # training + validation, as measured
    assert per["features"] == pytest.approx(per["id"] * FEATURE_FACTOR)
    assert model["seconds"] == pytest.approx((per["id"] + 2 * per["features"]) * DEFAULT_EPOCHS_TO_STOP)
    measured = training_estimate(["id"] * 4, epochs_needed=[30, 10, 20], epoch_seconds={"id": [5.0, 7.0, 6.0]},
                                 cap=15, **size)
    assert measured["epochs"] == 15                                 # median 20, bounded by the cap
    assert measured["seconds"] == pytest.approx(4 * 15 * 6.0) and measured["measured"]["id"]
    text = estimate_text(measured)
    assert "4 runs" in text and "~15 epochs" in text and "6 min" in text and "measured on this dataset" in text


def test_training_estimate_prices_each_fusion_run_by_its_own_layers():
    from dff_core.estimates import fusion_extra_per_epoch, training_estimate

    size = dict(users=50_000, items=19_220, targets=208_562, amp="bf16")
    runs = ["id", "gate", "dff", "dff"]
    est = training_estimate(runs, layer_counts=[0, 1, 31, 16], dim=576, **size)
    id_epoch = est["seconds_per_epoch"]["id"]
    one, all31, mid16 = (id_epoch + fusion_extra_per_epoch(n, 576, 19_220, 49, "bf16") for n in (1, 31, 16))
    assert id_epoch < one < mid16 < all31
    assert 1.3 < all31 / id_epoch < 1.7                           # DFF over 31 SmolLM2 layers: 1.4-1.6 measured
    assert one / id_epoch < 1.2                                   # a single-layer gate mixes nothing
    assert est["seconds"] == pytest.approx((id_epoch + one + all31 + mid16) * est["epochs"])
    # a float32 buffer reads twice the bytes
    assert fusion_extra_per_epoch(31, 576, 19_220, 49, "none") > 1.5 * fusion_extra_per_epoch(31, 576, 19_220, 49, "bf16")
    # measured: an ID epoch of 10 s and DFF-over-31 epochs of 16 s -> the extra (6 s) is rescaled to each run's layers
    measured = training_estimate(["dff", "gate"], layer_counts=[31, 1], dim=576, measured_layers=[31],
                                 epoch_seconds={"id": [10.0], "features": [16.0]}, **size)
    per_run = [10.0 + 6.0, 10.0 + 6.0 * fusion_extra_per_epoch(1, 576, 19_220, 49, "bf16")
               / fusion_extra_per_epoch(31, 576, 19_220, 49, "bf16")]
    assert measured["seconds"] == pytest.approx(sum(per_run) * measured["epochs"])


def test_training_cost_expects_the_epochs_of_runs_that_learned_alike(db, tmp_path):
    # convergence depends on batch, lr and loss: runs at another lr are no guide while runs like these exist
    from data_helpers import write_generic
    from jobs.datasets import import_generic
    from jobs.estimates import training_cost
    from storage.runs import create_run, finish_run

    ds = import_generic(db, "d", *write_generic(tmp_path / "d", n_users=30, n_items=20, seq=7))

    def finished(lr: float, epochs: int, ending: str = "early_stopped") -> None:
        run = create_run(db, ds.id, "id", {"batch_size": 256, "lr": lr, "loss": "full", "amp": "none"})
        finish_run(db, run.id, "done", result={}, best_epoch=epochs - 5, epochs_run=epochs, seconds=2.0 * epochs,
                   ending=ending)

    settings = {"batch_size": 256, "lr": 1e-3, "amp": "none", "loss": "full"}
    finished(5e-3, 40)
    assert training_cost(db, "d", ["id"], settings)["epochs"] == 40          # only other runs: the dataset's
    finished(1e-3, 12)
    finished(1e-3, 16)
    finished(1e-3, 90, ending="capped_improving")                           # not early-stopped: no guide
    est = training_cost(db, "d", ["id", "id"], settings, side_by_side=1)     # one at a time: the plain sum
    assert est["epochs"] == 16                                               # median of 12 and 16 (upper)
    assert est["seconds"] == pytest.approx(2 * 16 * 2.0)                    # 2 s an epoch, measured
    assert training_cost(db, "d", ["id"], {**settings, "lr": 5e-3})["epochs"] == 40
    # a strategy with early-stopped runs of its own is given their epochs; one without, the dataset's
    run = create_run(db, ds.id, "dff", {"batch_size": 256, "lr": 1e-3, "loss": "full", "amp": "none"})
    finish_run(db, run.id, "done", result={}, best_epoch=25, epochs_run=30, seconds=60.0, ending="early_stopped")
    by = training_cost(db, "d", ["id", "dff", "gate"], settings, side_by_side=1)
    per = by["seconds_per_epoch"]                                            # 2 s an epoch, both kinds
    # id: its own 12 and 16 (upper median 16); dff: its own 30; gate: none, so all three's upper median, 16
    assert by["seconds"] == pytest.approx(per["id"] * 16 + per["features"] * (30 + 16))
    assert by["epochs"] == round((16 + 30 + 16) / 3) and per["id"] == pytest.approx(2.0)
    for _ in range(3):                                                       # a faster release: newer runs, 1 s
        run = create_run(db, ds.id, "id", {"batch_size": 256, "lr": 1e-3, "loss": "full", "amp": "none"})
        finish_run(db, run.id, "done", result={}, best_epoch=9, epochs_run=14, seconds=14.0, ending="early_stopped")
    assert training_cost(db, "d", ["id"], settings)["seconds_per_epoch"]["id"] == pytest.approx(1.0)


def test_study_dry_run_prints_the_estimated_compute(db, tmp_path, capsys):
    from cli import main
    from data_helpers import write_generic
    from jobs.datasets import import_generic
    from storage.features import create_feature_set, finish_feature_set, write_vectors

    ds = import_generic(db, "d", *write_generic(tmp_path / "d", n_users=30, n_items=20, seq=7))
    items = ds.stats["items"]
    fs = create_feature_set(db, "d", "hs", "synthetic", 3, 4)
    write_vectors(db, fs, np.arange(items), np.random.default_rng(0).normal(size=(items, 3, 4)).astype(np.float32))
    finish_feature_set(db, fs, "complete")
    capsys.readouterr()
    assert main(["--db", str(db.path), "study", "--dataset", "d", "--features", "hs", "--seeds", "2",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("estimated compute:"))
    runs = int(out.split(" training runs")[0].split()[-1])
    assert runs > 2 and f"{runs} runs" in line and "cost model" in line


def test_compare_cli_prints_a_header_with_the_metric(db, tmp_path, capsys):
    from cli import main
    from data_helpers import write_generic
    from jobs.datasets import import_generic

    import_generic(db, "d", *write_generic(tmp_path / "d", n_users=30, n_items=20, seq=7))
    assert main(["--db", str(db.path), "train", "--dataset", "d", "--strategy", "id", "--epochs", "1",
                 "--hidden", "8"]) == 0
    capsys.readouterr()
    assert main(["--db", str(db.path), "compare", "--metric", "HR@10"]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert header.split()[:4] == ["strategy", "features", "layers", "dataset"] and "test HR@10" in header
    assert row.split()[0] == "id" and "(n=1)" in row
