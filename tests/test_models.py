"""SASRec masking / padding behaviour and every item-encoder strategy."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dff_core.models import (GATED_STRATEGIES, STRATEGIES, SASRec, SASRecConfig, build_item_encoder,
                             prepare_features)

N_ITEMS, L, D, H = 30, 4, 12, 16


def _features(seed=0):
    rng = np.random.default_rng(seed)
    # layers on wildly different scales, as LVLM hidden states are
    return (rng.normal(size=(N_ITEMS, L, D)) * np.array([1.0, 10.0, 100.0, 0.01])[None, :, None]).astype(np.float32)


def _model(strategy="id", features=None, layers=None, max_len=8, blocks=2, heads=2, dropout=0.2, seed=0):
    torch.manual_seed(seed)
    enc = build_item_encoder(strategy, N_ITEMS, H, features, layers)
    return SASRec(SASRecConfig(hidden=H, blocks=blocks, heads=heads, max_len=max_len, dropout=dropout), enc)


def test_causal_future_items_do_not_change_earlier_positions():
    model = _model().eval()
    seqs = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 13], [1, 2, 3, 4, 5, 6, 7, 8]])
    changed = seqs.clone()
    changed[:, 5:] = torch.tensor([20, 21, 22])
    with torch.no_grad():
        a, b = model(seqs), model(changed)
    assert torch.equal(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])  # and the later ones do change


def test_padding_width_and_padded_content_do_not_matter():
    model = _model().eval()
    short = torch.tensor([[0, 4, 9, 2]])
    long = torch.cat([torch.zeros(1, 4, dtype=torch.long), short], dim=1)
    with torch.no_grad():
        p_short, p_long = model.predict(short), model.predict(long)
    assert torch.allclose(p_short, p_long, atol=1e-5)


def test_attention_mask_never_has_an_empty_row():
    valid = torch.tensor([[False, False, True, True], [False, False, False, False], [True] * 4])
    m = SASRec.attention_mask(valid)[:, 0]
    assert m.any(dim=-1).all()  # every query has a key: softmax over it is finite
    # padded queries see only themselves; real queries see real keys at or before them
    assert m[0].tolist() == [[True, False, False, False], [False, True, False, False],
                             [False, False, True, False], [False, False, True, True]]
    assert torch.equal(m[1], torch.eye(4, dtype=torch.bool))
    assert torch.equal(m[2], torch.ones(4, 4, dtype=torch.bool).tril())


@pytest.mark.parametrize("train_mode", [False, True])
def test_no_nan_with_heavily_left_padded_sequences(train_mode):
    model = _model(max_len=50)
    model.train(train_mode)
    seqs = torch.zeros(6, 50, dtype=torch.long)
    seqs[:5, -1] = torch.tensor([1, 2, 3, 4, 5])  # length-1 sequences; row 5 is all padding
    h = model(seqs)
    scores = model.predict(seqs)
    assert torch.isfinite(h).all() and torch.isfinite(scores).all()
    assert scores.shape == (6, N_ITEMS)
    scores[:5].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_item_table_has_zero_padding_row_and_is_tied_to_scores():
    model = _model().eval()
    table = model.item_table()
    assert table.shape == (N_ITEMS + 1, H)
    assert torch.equal(table[0], torch.zeros(H))
    seqs = torch.tensor([[0, 3, 4]])
    with torch.no_grad():
        h = model(seqs)[:, -1]
        assert torch.allclose(model.predict(seqs), h @ model.item_table()[1:].T)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_builds_runs_and_keeps_features_frozen(strategy):
    feats = _features()
    before = feats.copy()
    model = _model(strategy, None if strategy == "id" else feats)
    enc = model.item_encoder
    assert np.array_equal(feats, before)  # the caller's array is not modified (normalisation is on a copy)
    seqs = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    tgt = torch.tensor([[0, 0, 2, 3, 4], [5, 6, 7, 8, 9]])
    table = model.item_table()
    assert enc().shape == (N_ITEMS, H) and table.shape == (N_ITEMS + 1, H)
    h = model(seqs, table)
    assert h.shape == (2, 5, H)
    sel = tgt > 0
    loss = F.cross_entropy(SASRec.scores(h[sel], table), tgt[sel] - 1)
    loss.backward()
    assert torch.isfinite(loss)
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    if strategy in ("id", "init"):
        assert not buffers  # no features kept at all
    else:
        feat_buf = buffers["item_encoder.feats"]
        assert feat_buf.requires_grad is False and feat_buf.grad is None
        assert all(p.data_ptr() != feat_buf.data_ptr() for p in params.values())
        assert "item_encoder.feats" not in model.state_dict()  # not written into checkpoints
    has_id = "item_encoder.emb" in params
    assert has_id == (strategy != "replace")
    for name, p in params.items():
        assert p.grad is not None, f"{name} got no gradient"
    if strategy == "dff":
        w = enc.layer_weights()
        assert list(w) == list(range(L)) and sum(w.values()) == pytest.approx(1.0)
        assert w == pytest.approx({i: 1 / L for i in range(L)})  # softmax of ones
        assert params["item_encoder.layer_logits"].grad.abs().sum() > 0
    else:
        assert enc.layer_weights() is None
    if strategy in GATED_STRATEGIES:
        assert 0.0 < enc.gate_mean() < 1.0
    else:
        assert enc.gate_mean() is None


def test_dff_chosen_layers_and_negative_indices():
    enc = build_item_encoder("dff", N_ITEMS, H, _features(), layers=[1, -1])
    assert list(enc.layer_weights()) == [1, 3]
    assert enc.feats.shape == (2, N_ITEMS, D)
    with pytest.raises(ValueError):
        build_item_encoder("dff", N_ITEMS, H, _features(), layers=[4])
    with pytest.raises(ValueError):
        build_item_encoder("dff", N_ITEMS, H, _features(), layers=[1, 1])


def test_feature_normalisation_equalises_layer_scales():
    feats, layers = prepare_features(_features(), N_ITEMS)
    assert layers == list(range(L))
    assert torch.allclose(feats.mean(dim=1), torch.zeros(L, D), atol=1e-4)
    assert torch.allclose(feats.std(dim=(1, 2)), torch.ones(L), atol=1e-3)
    raw, _ = prepare_features(_features(), N_ITEMS, normalize=False)
    assert raw[2].std() > 50 * raw[0].std()
    # a 2-D array is one layer
    one, layers = prepare_features(_features()[:, 0], N_ITEMS)
    assert one.shape == (1, N_ITEMS, D) and layers == [0]


def test_fused_vectors_start_balanced_with_the_id_embedding():
    enc = build_item_encoder("add", N_ITEMS, 64, np.random.default_rng(0).normal(size=(N_ITEMS, 1, 256)))
    e = enc.emb.detach()
    v = F.relu(enc.proj(enc.item_features())).detach()
    ratio = v.pow(2).mean().sqrt() / e.pow(2).mean().sqrt()
    assert 0.5 < ratio < 2.0


def test_init_strategy_starts_from_feature_pca():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(N_ITEMS // 2, D))
    feats = np.repeat(base, 2, axis=0)[:, None, :].astype(np.float32)  # items 2k and 2k+1 identical
    enc = build_item_encoder("init", N_ITEMS, 8, feats)
    table = enc().detach()
    assert torch.allclose(table[0::2], table[1::2], atol=1e-5)
    assert table.std().item() == pytest.approx(8 ** -0.5, rel=0.05)
    # PCA: component variances are non-increasing
    var = table.var(dim=0)
    assert (var[:-1] >= var[1:] - 1e-6).all()
    assert isinstance(enc.emb, torch.nn.Parameter)
    # wider hidden than feature dims: the extra dimensions are filled, not left at zero
    wide = build_item_encoder("init", N_ITEMS, 2 * D, feats)().detach()
    assert wide[:, D:].abs().sum() > 0


def test_build_errors():
    with pytest.raises(ValueError, match="unknown strategy"):
        build_item_encoder("nope", N_ITEMS, H)
    with pytest.raises(ValueError, match="needs features"):
        build_item_encoder("dff", N_ITEMS, H)
    with pytest.raises(ValueError, match="rows"):
        build_item_encoder("gate", N_ITEMS + 1, H, _features())
    bad = _features()
    bad[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build_item_encoder("dff", N_ITEMS, H, bad)
    with pytest.raises(ValueError, match="divisible"):
        SASRec(SASRecConfig(hidden=H, heads=3), build_item_encoder("id", N_ITEMS, H))


def test_layer_logits_from_scores():
    from dff_core.models.item_encoders import layer_logits_from_scores

    assert torch.equal(layer_logits_from_scores(None, 3), torch.zeros(3))       # uniform start
    z = layer_logits_from_scores([1.0, 2.0, 3.0], 3)
    assert torch.allclose(z, torch.tensor([-1.0, 0.0, 1.0]))                   # z-scores: unit-free
    assert torch.allclose(layer_logits_from_scores([10.0, 20.0, 30.0], 3), z)
    assert torch.equal(layer_logits_from_scores([2.0, 2.0], 2), torch.zeros(2))  # equal scores: uniform
    with pytest.raises(ValueError, match="one per chosen layer"):
        layer_logits_from_scores([1.0, 2.0], 3)
    with pytest.raises(ValueError, match="finite"):
        layer_logits_from_scores([1.0, float("nan")], 2)


def test_cpu_dropout_keeps_the_right_share_scaled_and_reproducibly():
    from dff_core.models.sasrec import Dropout, keep_mask

    torch.manual_seed(0)
    m = keep_mask((400, 1000), 0.2)
    kept = (m > 0).double().mean().item()
    assert kept == pytest.approx(0.8, abs=0.003)                          # 400,000 draws: ±0.0006 is one sigma
    assert set(torch.unique(m).tolist()) == {0.0, 1.25}                   # scaled by 1 / (1 - p)
    for rows in (m[:, :16], m[:, -16:]):                                  # every quarter of a 64-bit draw is fair
        assert (rows > 0).double().mean().item() == pytest.approx(0.8, abs=0.01)
    d = Dropout(0.2)
    x = torch.randn(64, 5, 8, requires_grad=True)
    torch.manual_seed(7)
    y = d(x)
    torch.manual_seed(7)
    assert torch.equal(y, d(x))                                           # the global generator reproduces it
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() * 1.25)                   # the gradient passes where kept, scaled
    d.eval()
    assert torch.equal(d(x), x)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    assert torch.equal(Dropout(0.0)(x), x)
