"""LVLM adapters on tiny random checkpoints of every family: layers, shapes, video-token pooling, batching,
determinism, captions, processor layout, and one extraction into storage."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dff_core.backbones.base import BackboneInputError, ItemInput  # noqa: E402
from dff_core.backbones.tiny import TINY_FAMILIES, build_tiny_checkpoint  # noqa: E402

CLASSES = {
    "qwen2-vl": ("dff_core.backbones.qwen_vl", "Qwen2VLBackbone"),
    "qwen2.5-vl": ("dff_core.backbones.qwen_vl", "Qwen25VLBackbone"),
    "qwen3-vl": ("dff_core.backbones.qwen_vl", "Qwen3VLBackbone"),
    "llava-onevision": ("dff_core.backbones.llava_onevision", "LlavaOneVisionBackbone"),
    "smolvlm": ("dff_core.backbones.smolvlm", "SmolVLMBackbone"),
}


def family_cls(family: str):
    import importlib

    module, name = CLASSES[family]
    return getattr(importlib.import_module(module), name)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_lvlm")
    for family in TINY_FAMILIES:
        build_tiny_checkpoint(family, root / family, seed=0)
    return root


@pytest.fixture(scope="session")
def backbones(tiny_root):
    return {family: family_cls(family)(str(tiny_root / family)) for family in TINY_FAMILIES}


def frames(seed: int, n: int = 4, h: int = 32, w: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def items(n: int = 3, num_frames: int = 4) -> list[ItemInput]:
    return [ItemInput(item_id=f"i{k}", title="a cat on a skateboard " + "very " * (3 * k),
                      frames=frames(k, num_frames), duration=4.0) for k in range(n)]


def vision_token_id(bb) -> int:
    """The placeholder each family's processor expands per video (SmolVLM: one <image> per frame)."""
    p = bb.processor
    return p.image_token_id if bb.family == "smolvlm" else p.video_token_id


def expected_video_tokens(bb, num_frames: int, side: int = 32) -> int:
    """Video tokens a [num_frames, side, side] video must become, from the checkpoint's own config."""
    cfg = bb.model.config
    if bb.family.startswith("qwen"):
        vp = bb.processor.video_processor
        p, m, t = vp.patch_size, vp.merge_size, vp.temporal_patch_size
        return -(-num_frames // t) * (side // p) * (side // p) // (m * m)
    if bb.family == "llava-onevision":
        per_side = cfg.vision_config.image_size // cfg.vision_config.patch_size
        return num_frames * (-(-per_side // 2)) ** 2 + 1
    per_side = cfg.vision_config.image_size // cfg.vision_config.patch_size
    return num_frames * per_side * per_side // cfg.scale_factor ** 2


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_layers_and_shapes(backbones, tiny_root, family):
    from transformers import AutoConfig

    bb = backbones[family]
    cfg = AutoConfig.from_pretrained(tiny_root / family).get_text_config()
    assert bb.num_layers == cfg.num_hidden_layers + 1 == 4
    assert bb.dim == cfg.hidden_size == 32
    assert len(bb.layer_names) == bb.num_layers and bb.layer_names[0] == "embeddings"
    assert bb.inputs == ("frames", "title", "cover") and bb.default_pooling == "video_mean" and bb.can_caption
    for pooling in bb.poolings:
        out = bb.encode(items(), pooling)
        assert out.shape == (3, cfg.num_hidden_layers + 1, cfg.hidden_size), pooling
        assert out.dtype == np.float32 and np.isfinite(out).all()
        assert np.abs(out).sum() > 0


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_video_mean_is_the_mean_over_video_token_positions(backbones, family):
    bb = backbones[family]
    batch = items(2)
    enc = bb.prepare(batch)
    ids = enc["input_ids"]
    mask = (ids == vision_token_id(bb)) & enc["attention_mask"].bool()
    assert mask.sum(1).tolist() == [expected_video_tokens(bb, 4)] * 2
    hidden = bb.forward_hidden(enc)
    manual = torch.stack([(h.float() * mask[..., None]).sum(1) / mask.sum(1, keepdim=True) for h in hidden], dim=1)
    np.testing.assert_allclose(bb.encode(batch, "video_mean"), manual.numpy(), rtol=1e-5, atol=1e-6)
    last = enc["attention_mask"].sum(1) - 1  # right padding: last real token
    manual_last = torch.stack([h[torch.arange(2), last] for h in hidden], dim=1)
    np.testing.assert_allclose(bb.encode(batch, "last"), manual_last.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_frames_move_video_positions_not_text_embeddings(backbones, family):
    """Layer 0 is the embedding output: other frames change the vision embeddings (video_mean) but not the
    text token embeddings (text_mean); deeper layers see the video everywhere."""
    bb = backbones[family]
    a = [ItemInput(item_id="x", title="same title", frames=frames(1), duration=4.0)]
    b = [ItemInput(item_id="x", title="same title", frames=frames(2), duration=4.0)]
    va, vb = bb.encode(a, "video_mean"), bb.encode(b, "video_mean")
    ta, tb = bb.encode(a, "text_mean"), bb.encode(b, "text_mean")
    assert np.abs(va[0, 0] - vb[0, 0]).max() > 1e-4
    np.testing.assert_allclose(ta[0, 0], tb[0, 0], atol=1e-7)
    assert np.abs(ta[0, -1] - tb[0, -1]).max() > 1e-5
    assert np.abs(va[0, 0] - ta[0, 0]).max() > 1e-4


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_batch_equals_one_by_one(backbones, family):
    bb = backbones[family]
    batch = items(2) + [ItemInput(item_id="short", title="dog", frames=frames(9, n=2, h=40, w=24)),
                        ItemInput(item_id="untitled", frames=frames(10))]
    for pooling in ("video_mean", "last"):
        together = bb.encode(batch, pooling)
        alone = np.concatenate([bb.encode([it], pooling) for it in batch])
        np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5, err_msg=pooling)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_deterministic_and_reloadable(backbones, tiny_root, family):
    bb = backbones[family]
    first = bb.encode(items(2), "all_mean")
    np.testing.assert_array_equal(first, bb.encode(items(2), "all_mean"))
    again = family_cls(family)(str(tiny_root / family))
    np.testing.assert_allclose(first, again.encode(items(2), "all_mean"), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_caption_returns_strings(backbones, family):
    bb = backbones[family]
    batch = items(2) + [ItemInput(item_id="t", title="only a title")]
    texts = bb.caption(batch, max_new_tokens=4)
    assert isinstance(texts, list) and len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert texts[:2] == [bb.caption([it], max_new_tokens=4)[0] for it in batch[:2]]


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_input_errors(backbones, family):
    bb = backbones[family]
    title_only = [ItemInput(item_id="t1", title="a title, no video")]
    with pytest.raises(BackboneInputError, match="t1"):
        bb.encode(title_only, "video_mean")
    assert bb.encode(title_only, "text_mean").shape == (1, bb.num_layers, bb.dim)
    with pytest.raises(BackboneInputError, match="neither"):
        bb.encode([ItemInput(item_id="e")], "all_mean")
    with pytest.raises(ValueError, match="pools by"):
        bb.encode(items(1), "max")
    with pytest.raises(ValueError, match="needs a checkpoint"):
        family_cls(family)(None)


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen3-vl", "smolvlm"])
def test_video_processor_matches_upstream_image_layout(backbones, family):
    """A 1-frame video at the model's own size needs no resize, so our torch video processor must give the
    same numbers in the same layout as the family's (PIL) image processor for that frame."""
    bb = backbones[family]
    frame = frames(3, n=1)
    video = bb.processor.video_processor([frame], return_tensors="pt")
    image = bb.processor.image_processor([frame[0]], return_tensors="pt")
    if family.startswith("qwen"):
        assert video["video_grid_thw"].tolist() == image["image_grid_thw"].tolist()
        np.testing.assert_allclose(video["pixel_values_videos"].numpy(), image["pixel_values"].numpy(), atol=1e-5)
    else:
        np.testing.assert_allclose(video["pixel_values"][0, 0].numpy(), image["pixel_values"][0, 0].numpy(),
                                   atol=1e-5)


def test_registry_lists_the_families(tiny_root):
    from dff_core.backbones import family_info, load_backbone

    for family in TINY_FAMILIES:
        info = family_info(family)
        assert info["available"] and info["needs_source"] and info["can_caption"]
        assert info["default_pooling"] == "video_mean" and "frames" in info["default_inputs"]
    bb = load_backbone(f"smolvlm:{tiny_root / 'smolvlm'}")
    assert bb.encode(items(1), "video_mean").shape == (1, 4, 32)


def test_cli_tiny_checkpoint(tmp_path, capsys):
    from cli import main

    assert main(["tiny-checkpoint", "no-such-family", str(tmp_path / "x")]) == 2
    assert "no tiny checkpoint" in capsys.readouterr().err
    assert main(["tiny-checkpoint", "llava-onevision", str(tmp_path / "lo")]) == 0
    assert (tmp_path / "lo" / "model.safetensors").is_file() and (tmp_path / "lo" / "processor_config.json").is_file()


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    """A small demo dataset (clips, covers, titles) in a fresh database."""
    from jobs.datasets import import_generic
    from dff_core.demo import build_demo
    from storage import Database

    folder = tmp_path_factory.mktemp("lvlm_demo")
    build_demo(folder / "demo", n_items=20, n_users=40)
    db = Database(folder / "t.duckdb")
    import_generic(db, "demo", folder / "demo" / "interactions.csv", folder / "demo" / "items.csv", folder / "demo")
    return db


@pytest.mark.parametrize("family", ["qwen3-vl", "llava-onevision"])
def test_run_extraction_of_the_demo_with_a_tiny_checkpoint(demo_db, tiny_root, family):
    from dff_core.backbones import clear_cache
    from jobs.workflows import run_extraction
    from storage.datasets import load_items
    from storage.features import failures, read_features

    spec = f"{family}:{tiny_root / family}"
    fs = run_extraction(demo_db, "demo", spec, f"tiny-{family}", inputs=["frames", "title"], num_frames=4,
                        frame_size=32, pooling="video_mean", batch_size=8)
    items = load_items(demo_db, fs.dataset_id)
    feats, present = read_features(demo_db, fs)
    failed = failures(demo_db, fs)
    assert (fs.num_layers, fs.dim, fs.pooling) == (4, 32, "video_mean")
    assert fs.layer_names == ["embeddings", "layer 1", "layer 2", "layer 3"]
    assert feats.shape == (len(items), 4, 32)
    assert present.sum() + len(failed) == len(items) and present.sum() >= len(items) - 4
    assert fs.status in ("complete", "partial") and np.isfinite(feats[present]).all()
    assert np.abs(feats[present]).sum() > 0
    if failed:  # demo items without any media have nothing to pool over
        assert all("no video or cover" in r or "video" in r for r in failed.values())
    # the stored vectors are the adapter's own output for those items (within float16 rounding)
    from pathlib import Path

    from dff_core.extraction import ExtractItem
    from dff_core.extraction.runner import _load_input
    from storage.datasets import get_dataset

    root = Path(get_dataset(demo_db, "demo").root)
    media = lambda p: str(root / p) if isinstance(p, str) and p else None  # noqa: E731
    rows = items[present].head(3)
    batch = [_load_input(ExtractItem(int(r.idx), str(r.item_id), r.title, media(r.video_path), media(r.cover_path)),
                         ("frames", "title"), 4, 32) for r in rows.itertuples()]
    direct = family_cls(family)(str(tiny_root / family)).encode(batch, "video_mean")
    np.testing.assert_allclose(feats[rows.idx.to_numpy()], direct, rtol=2e-3, atol=2e-3 * np.abs(direct).max())
    clear_cache()


def test_legacy_checkpoint_layout_loads_the_same(backbones, tiny_root, tmp_path):
    """Older hub checkpoints (e.g. Qwen2-VL-2B-Instruct) carry one ``preprocessor_config.json`` with
    ``min_pixels``/``max_pixels``, a ``chat_template.json`` and no ``processor_config.json``: the video
    processor falls back to the image settings, as upstream does, and features do not change."""
    import json
    import shutil

    src, legacy = tiny_root / "qwen2-vl", tmp_path / "legacy"
    shutil.copytree(src, legacy)
    nested = json.loads((legacy / "processor_config.json").read_text())
    image = nested["image_processor"]
    size = image.pop("size")
    image.update(min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"], processor_class="Qwen2VLProcessor")
    (legacy / "preprocessor_config.json").write_text(json.dumps(image))
    (legacy / "chat_template.json").write_text(json.dumps({"chat_template": (legacy / "chat_template.jinja").read_text()}))
    (legacy / "processor_config.json").unlink()
    (legacy / "chat_template.jinja").unlink()
    old = family_cls("qwen2-vl")(str(legacy))
    assert old.processor.video_processor.size == {"shortest_edge": size["shortest_edge"],
                                                  "longest_edge": size["longest_edge"]}
    np.testing.assert_allclose(old.encode(items(2), "video_mean"), backbones["qwen2-vl"].encode(items(2), "video_mean"),
                               rtol=1e-6, atol=1e-7)
