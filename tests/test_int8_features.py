"""DFF's layer stack in int8 (``feature_buffer``): the quantization's error bound, the mix and its gradient equal to
the same maths over the dequantized buffer (compiled loops and torch's fallback alike), which runs get it, and a
run on planted data that still finds the planted layer at the float buffer's quality."""
import pytest
import torch

from dff_core import cpu_kernels
from dff_core.models.item_encoders import LayerMixQ8, build_item_encoder, quantize_int8
from dff_core.train import TrainConfig, train
from dff_core.train.trainer import build_model, feature_dtype
from test_train import SIGNAL_LAYER, cluster_data


def _stack(layers=5, items=301, dim=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(layers, items, dim, generator=g)
    x[:, :, 3] *= 40                      # one wide dimension, as LVLM hidden states have
    x[:, :, 7] = 0                        # one dimension that is 0 everywhere
    return x


def test_quantize_int8_bounds_each_entry_by_half_its_own_scale():
    x = _stack()
    q, scale = quantize_int8(x)
    assert q.dtype == torch.int8 and q.shape == x.shape and scale.shape == (5, 48)
    assert int(q.abs().max()) == 127 and int(q.min()) >= -127
    err = (q.float() * scale[:, None] - x).abs()
    assert (err <= scale[:, None] / 2 + 1e-6).all()                          # round to nearest, per entry
    assert torch.equal(scale[:, 7], torch.ones(5)) and not q[:, :, 7].any()  # a dead dimension: scale 1, zeros
    assert (scale[:, 3] > 20 * scale[:, 0]).all()                            # the wide one has its own scale
    assert err[:, :, 0].max() < 0.02                                         # and does not coarsen the others


@pytest.mark.parametrize("loops", [True, False])
def test_the_int8_mix_and_its_gradient_are_the_dequantized_maths(loops, monkeypatch):
    if loops and not cpu_kernels.usable():
        pytest.skip("no compiled CPU loops here (numba or libgomp missing)")
    if not loops:
        monkeypatch.setattr(cpu_kernels, "_loops", False)                   # torch's path, as on a GPU
    q, scale = quantize_int8(_stack())
    w = torch.randn(5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    g = torch.randn(301, 48, generator=torch.Generator().manual_seed(2))
    h = LayerMixQ8.apply(torch.softmax(w, 0), q, scale)
    assert h.dtype == torch.bfloat16 and h.shape == (301, 48)
    h.backward(g)
    w64 = w.detach().double().requires_grad_()
    ref = torch.einsum("l,lnd->nd", torch.softmax(w64, 0), q.double() * scale[:, None].double())
    # the output is rounded to bfloat16 once: within half a bfloat16 ulp of the float64 mix
    assert ((h.double() - ref).abs() <= ref.abs() * 2 ** -8 + 1e-30).all()
    ref.backward(g.bfloat16().double())                                      # the gradient of a bfloat16 output
    torch.testing.assert_close(w.grad.double(), w64.grad, rtol=1e-5, atol=1e-7)


def test_the_compiled_loops_agree_with_torchs_path():
    if not cpu_kernels.usable():
        pytest.skip("no compiled CPU loops here")
    q, scale = quantize_int8(_stack(layers=3, items=97, dim=20, seed=4))
    coef = torch.rand(3, 20) / 10
    g = torch.randn(97, 20).bfloat16()
    mix = cpu_kernels.mix_q8(q, coef)
    ref = sum(q[l].float() * coef[l] for l in range(3))
    assert torch.equal(mix, ref.bfloat16()) or (mix.float() - ref).abs().max() <= ref.abs().max() * 2 ** -8
    sums = cpu_kernels.q8_layer_sums(q, g)
    torch.testing.assert_close(sums, torch.stack([(q[l].float() * g.float()).sum(0) for l in range(3)]),
                               rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="int8"):
        cpu_kernels.mix_q8(q.float(), coef)


def test_which_runs_get_an_int8_buffer(monkeypatch):
    monkeypatch.setenv("DFF_CPU_BF16", "1")                                  # a CPU with native bfloat16
    cpu = torch.device("cpu")
    assert feature_dtype(TrainConfig(strategy="dff", amp="bf16", feature_buffer="int8"), cpu) == torch.int8
    assert feature_dtype(TrainConfig(strategy="dff", amp="bf16"), cpu) == torch.bfloat16      # the default: float
    assert feature_dtype(TrainConfig(strategy="dff", amp="none"), cpu) == torch.float32
    assert feature_dtype(TrainConfig(strategy="dff", amp="none", feature_buffer="int8"), cpu) == torch.int8
    # one vector per item: nothing to gain, the buffer follows amp
    assert feature_dtype(TrainConfig(strategy="gate", amp="bf16", feature_buffer="int8"), cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="feature buffer"):
        TrainConfig(feature_buffer="int4").validate()
    with pytest.raises(ValueError, match="layer stack"):
        build_item_encoder("gate", 10, 8, torch.randn(10, 2, 4), feature_dtype=torch.int8)
    data, feats = cluster_data(seed=0)
    enc = build_model(data.num_items, TrainConfig(strategy="dff", amp="bf16", feature_buffer="int8", hidden=32),
                      feats).item_encoder
    assert enc.feats.dtype == torch.int8 and enc.feat_scale.shape == (feats.shape[1], feats.shape[2])
    assert "item_encoder.feat_scale" not in build_model(  # like the buffer, never written into a checkpoint
        data.num_items, TrainConfig(strategy="dff", feature_buffer="int8", hidden=32), feats).state_dict()


def test_an_int8_run_finds_the_planted_layer_at_the_float_runs_quality():
    data, feats = cluster_data(seed=0)
    cfg = dict(epochs=25, batch_size=64, lr=3e-3, hidden=32, blocks=1, max_len=10, patience=25, num_threads=1)
    f32 = train(data, TrainConfig(strategy="dff", **cfg), features=feats)
    q8 = train(data, TrainConfig(strategy="dff", feature_buffer="int8", **cfg), features=feats)
    w = q8.layer_weights
    assert max(w, key=w.get) == SIGNAL_LAYER
    assert w[SIGNAL_LAYER] > 1.5 * max(v for k, v in w.items() if k != SIGNAL_LAYER)
    assert q8.test["NDCG@10"] == pytest.approx(f32.test["NDCG@10"], rel=0.1)
