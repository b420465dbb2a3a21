"""The backbone registry and the three built-in backbones with their real offline weights."""
from __future__ import annotations

import numpy as np
import pytest

from dff_core.backbones import (FAMILIES, BackboneInputError, ItemInput, family_info, list_families, load_backbone,
                                parse_spec)

TITLES = ["Cute cat plays with a ball of yarn", "How to cook perfect rice in ten minutes, step by step",
          "街头舞蹈比赛", "ok"]


def items(texts):
    return [ItemInput(str(i), title=t) for i, t in enumerate(texts)]


# ------------------------------------------------------------------------------------------ registry

def test_parse_spec_and_unknown_family():
    assert parse_spec("smollm2") == ("smollm2", None)
    assert parse_spec("qwen2-vl:Qwen/Qwen2-VL-2B-Instruct") == ("qwen2-vl", "Qwen/Qwen2-VL-2B-Instruct")
    assert parse_spec(" smolvlm:/models/a:b ") == ("smolvlm", "/models/a:b")
    with pytest.raises(ValueError, match="known families: smollm2, minilm, efficientnet-lite0"):
        parse_spec("gpt5:x")
    with pytest.raises(ValueError, match="empty backbone spec"):
        parse_spec("")


def test_registry_lists_every_family_without_loading_weights():
    assert {"smollm2", "minilm", "efficientnet-lite0", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "llava-onevision",
            "smolvlm"} <= set(FAMILIES)
    by_name = {f["family"]: f for f in list_families()}
    assert set(by_name) == set(FAMILIES)
    for name in ("smollm2", "minilm", "efficientnet-lite0"):
        info = by_name[name]
        assert info["available"] and not info["needs_source"]
        assert info["default_pooling"] in info["poolings"]
        assert set(info["default_inputs"]) <= set(info["inputs"])
    assert (by_name["smollm2"]["num_layers"], by_name["smollm2"]["dim"]) == (31, 576)
    assert by_name["smollm2"]["can_caption"] and not by_name["minilm"]["can_caption"]
    assert by_name["efficientnet-lite0"]["inputs"] == ["frames", "cover"]
    assert by_name["efficientnet-lite0"]["frame_size"] == 224
    for info in by_name.values():  # a missing adapter module is reported, never raised
        if not info["available"]:
            assert "not available" in info["reason"]


def test_missing_module_gives_clear_error(monkeypatch):
    from dff_core import backbones

    monkeypatch.setitem(backbones.FAMILIES, "smolvlm", "dff_core.backbones.no_such_module:X")
    with pytest.raises(ImportError, match="'smolvlm' is not available.*no_such_module"):
        family_info("smolvlm")
    assert family_info("minilm")["family"] == "minilm"  # the others still work
    entry = {f["family"]: f for f in backbones.list_families()}["smolvlm"]
    assert entry["available"] is False and "no_such_module" in entry["reason"]


def test_backbones_are_cached_per_spec():
    assert load_backbone("minilm") is load_backbone("minilm", device="cpu")
    assert load_backbone("minilm", dtype="float32") is not load_backbone("minilm")


# ------------------------------------------------------------------------------------------ smollm2

@pytest.fixture(scope="module")
def smollm2():
    return load_backbone("smollm2")


def test_smollm2_all_layers_shapes_and_batch_equals_single(smollm2):
    batch = smollm2.encode(items(TITLES), "all_mean")
    assert batch.shape == (4, 31, 576) and batch.dtype == np.float32
    assert np.isfinite(batch).all()
    for i, t in enumerate(TITLES):
        one = smollm2.encode([ItemInput("x", title=t)], "all_mean")[0]
        np.testing.assert_allclose(batch[i], one, rtol=1e-4, atol=1e-4)
    # layers differ from each other; the embedding layer is the token-embedding mean
    assert not np.allclose(batch[0, 0], batch[0, 15])
    ids = smollm2.tokenizer(TITLES[0])["input_ids"]
    emb = smollm2.model.model.embed_tokens.weight[ids].mean(0).detach().numpy()
    np.testing.assert_allclose(batch[0, 0], emb, atol=1e-5)


def test_smollm2_poolings_differ_and_last_is_last_token(smollm2):
    mean = smollm2.encode(items(TITLES[:2]), "all_mean")
    last = smollm2.encode(items(TITLES[:2]), "last")
    assert not np.allclose(mean, last)
    import torch

    enc = smollm2.tokenizer(TITLES[1], return_tensors="pt")
    with torch.inference_mode():
        hs = smollm2.model.model(**enc, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(last[1, 30], hs[30][0, -1].numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(BackboneInputError, match="no title"):
        smollm2.encode([ItemInput("z", title="  ")], "all_mean")
    with pytest.raises(ValueError, match="pools by"):
        smollm2.encode(items(TITLES[:1]), "video_mean")


def test_smollm2_caption_is_deterministic_and_batch_independent(smollm2):
    texts = smollm2.caption(items(TITLES[:2]), max_new_tokens=8)
    assert len(texts) == 2 and all(isinstance(t, str) and t.strip() for t in texts)
    assert smollm2.caption(items(TITLES[1:2]), max_new_tokens=8) == texts[1:]


# ------------------------------------------------------------------------------------------ minilm

def test_minilm_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from dff_core.backbones.minilm import bundled_model_dir

    model = load_backbone("minilm")
    ours = model.encode(items(TITLES), "sentence")
    assert ours.shape == (4, 1, 384)
    ref = SentenceTransformer(str(bundled_model_dir()), device="cpu").encode(TITLES, convert_to_numpy=True)
    cos = (ours[:, 0] * ref).sum(-1) / (np.linalg.norm(ours[:, 0], axis=-1) * np.linalg.norm(ref, axis=-1))
    assert (cos > 0.999).all(), cos
    np.testing.assert_allclose(np.linalg.norm(ours[:, 0], axis=-1), 1.0, atol=1e-5)
    layers = model.encode(items(TITLES), "all_mean")
    assert layers.shape == (4, 7, 384) and model.layers_for("all_mean") == 7 and model.layers_for("sentence") == 1
    # the last hidden state, normalised, is the sentence vector
    last = layers[:, -1] / np.linalg.norm(layers[:, -1], axis=-1, keepdims=True)
    np.testing.assert_allclose(last, ours[:, 0], atol=1e-5)


# ------------------------------------------------------------------------------------------ efficientnet

@pytest.fixture(scope="module")
def effnet():
    return load_backbone("efficientnet-lite0")


def test_efficientnet_stages_shapes_determinism_and_frame_mean(effnet):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    feats = effnet.encode([ItemInput("a", frames=a), ItemInput("b", frames=b)], "video_mean")
    assert feats.shape == (2, 9, 1280) and effnet.num_layers == 9
    assert len(effnet.layer_names) == 9 and effnet.layer_names[-1] == "head (1280-d)"
    np.testing.assert_array_equal(feats, effnet.encode([ItemInput("a", frames=a), ItemInput("b", frames=b)]))
    # each stage fills its own width, zero beyond
    from dff_core.backbones.efficientnet import STAGE_WIDTHS

    for layer, width in enumerate(STAGE_WIDTHS):
        assert np.abs(feats[:, layer, :width]).sum() > 0
        assert not feats[:, layer, width:].any()
    # an item's vector is the mean of its frames' vectors
    per_frame = effnet.encode([ItemInput(str(i), frames=a[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(feats[0], per_frame.mean(0), rtol=1e-4, atol=1e-5)
    with pytest.raises(BackboneInputError, match="no video frames"):
        effnet.encode([ItemInput("c")])


def test_efficientnet_weights_load_strictly_and_classify(effnet):
    """A flat grey image and noise give confident-enough, different, deterministic ImageNet predictions;
    the network's classifier matches its own head features (the weights are wired as trained)."""
    import torch

    grey = np.full((1, 224, 224, 3), 128, np.uint8)
    p = effnet.classify(grey)
    assert p.shape == (1, 1000) and abs(p.sum() - 1) < 1e-4
    with torch.inference_mode():
        head = effnet.model.stages(effnet._prepare(grey))[-1].mean(dim=(2, 3))
        logits = effnet.model._fc(head)
    assert int(logits.argmax()) == int(p.argmax())


def test_efficientnet_real_cover_gets_a_confident_class(effnet, microlens_dir):
    from dff_core.video import load_cover

    cover = load_cover(microlens_dir / "covers" / "16821.jpg", 224)  # an abdominal muscle stimulator pad
    p = effnet.classify(cover[None])[0]
    assert p.max() > 0.2  # far above chance (0.001): the weights, padding and normalisation fit together
