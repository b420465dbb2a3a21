"""Extraction: batching, per-item failures, resume, the caption route, and the CLI end to end on a small
demo dataset with each built-in backbone (real weights)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dff_core.backbones import ItemInput, load_backbone
from dff_core.backbones.base import Backbone, BackboneInputError
from dff_core.extraction import ExtractItem, caption_and_embed, extract
from media_helpers import write_image, write_video

ROOT = Path(__file__).resolve().parent.parent


class TitleHash(Backbone):
    """A fast stand-in whose vector depends only on the item (title and frames), never on its batch."""

    family, inputs, poolings, default_pooling, num_layers, dim = "fake", ("title", "frames"), ("all_mean",), \
        "all_mean", 3, 4
    can_caption = True

    def __init__(self):
        self.batches = []

    def encode(self, batch, pooling):
        self.batches.append([it.item_id for it in batch])
        out = np.zeros((len(batch), 3, 4), np.float32)
        for b, it in enumerate(batch):
            if it.title == "poison":
                raise BackboneInputError(f"item {it.item_id}: poisoned", item_id=it.item_id)
            out[b, :, 0] = len(it.title or "")
            out[b, :, 1] = float(it.frames.mean()) if it.frames is not None else -1
            out[b, :, 2] = np.arange(3)
            out[b, :, 3] = sum(map(ord, it.title or ""))
        return out

    def caption(self, batch, max_new_tokens=32):
        return [f"about {it.title}" if it.title != "silent" else "" for it in batch]


def _collect():
    got, failed = {}, {}

    def on_batch(idx, feats):
        assert feats.dtype == np.float32 and feats.shape[1:] == (3, 4)
        for i, f in zip(idx, feats):
            got[i] = f

    return got, failed, on_batch, lambda i, r: failed.__setitem__(i, r)


def test_sorted_batches_give_the_same_vectors_and_poison_fails_alone(tmp_path):
    titles = ["a" * n for n in (5, 1, 9, 3, 7, 2, 8)] + ["poison"]
    items = [ExtractItem(i, f"i{i}", t) for i, t in enumerate(titles)]
    model = TitleHash()
    got, failed, on_batch, on_failure = _collect()
    seen = []
    summary = extract(model, items, inputs=("title",), batch_size=3, on_batch=on_batch, on_failure=on_failure,
                      progress=lambda d, t, info: seen.append((d, t, info["items_per_second"])))
    assert (summary.done, summary.failed, summary.cancelled) == (7, 1, False)
    assert set(got) == set(range(7)) and list(failed) == [7] and "poisoned" in failed[7]
    for i, t in enumerate(titles[:7]):
        assert got[i][0, 0] == len(t) and got[i][0, 3] == sum(map(ord, t))
    # batches hold similar lengths (longest first) and the last progress call reports everything
    assert model.batches[0] == ["i2", "i6", "i4"]
    assert seen[-1][:2] == (8, 8) and summary.items_per_second > 0


def test_skip_and_stop(tmp_path):
    items = [ExtractItem(i, f"i{i}", f"title {i}") for i in range(10)]
    got, _, on_batch, _ = _collect()
    calls = []
    summary = extract(TitleHash(), items, inputs=("title",), batch_size=2, skip={0, 1, 2}, on_batch=on_batch,
                      should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert summary.cancelled and summary.done == 4 and summary.skipped == 3 and summary.total == 7
    assert not set(got) & {0, 1, 2}


def test_media_failures_are_per_item(tmp_path):
    good = write_video(tmp_path / "good.mp4", num_frames=20)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    truncated = tmp_path / "cut.mp4"
    data = write_video(tmp_path / "long.mp4", num_frames=60, gop=10).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    cover = write_image(tmp_path / "c.jpg", value=200)
    items = [ExtractItem(0, "good", "t0", str(good)), ExtractItem(1, "corrupt", "t1", str(corrupt)),
             ExtractItem(2, "cover-only", "t2", None, str(cover)), ExtractItem(3, "nothing", None, None, None),
             ExtractItem(4, "cut", "t4", str(truncated), str(cover))]
    got, failed, on_batch, on_failure = _collect()
    summary = extract(TitleHash(), items, inputs=("frames",), num_frames=4, frame_size=32, batch_size=2,
                      on_batch=on_batch, on_failure=on_failure)
    assert set(got) == {0, 2} and set(failed) == {1, 3, 4} and summary.failed == 3
    assert "corrupt.mp4" in failed[1] and "no video or cover" in failed[3] and "cut.mp4" in failed[4]
    assert abs(got[2][0, 1] - 200) < 3  # the cover stood in for the missing video


def test_caption_route_with_a_fake_lvlm():
    items = [ExtractItem(i, f"i{i}", t) for i, t in enumerate(["cats", "silent", "rice and beans"])]
    encoder = load_backbone("minilm")
    out = {}
    failed = {}
    summary = caption_and_embed(TitleHash(), encoder, items, inputs=("title",), batch_size=2,
                                on_batch=lambda idx, f, texts: out.update({i: (v, t) for i, v, t in zip(idx, f, texts)}),
                                on_failure=lambda i, r: failed.__setitem__(i, r))
    assert summary.done == 2 and set(out) == {0, 2} and "empty caption" in failed[1]
    vec, text = out[2]
    assert text == "about rice and beans" and vec.shape == (1, 384)
    np.testing.assert_allclose(vec, encoder.encode([ItemInput("x", title=text)], "sentence")[0], atol=1e-5)


# ------------------------------------------------------------------------------ storage and the CLI

@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    """A small demo dataset (same generator as ``python -m dff_core demo``) in a fresh database."""
    from jobs.datasets import import_generic
    from dff_core.demo import build_demo
    from storage import Database

    folder = tmp_path_factory.mktemp("demo")
    build_demo(folder / "demo", n_items=20, n_users=40)
    db = Database(folder / "t.duckdb")
    import_generic(db, "demo", folder / "demo" / "interactions.csv", folder / "demo" / "items.csv", folder / "demo")
    return db


def cli(db, *args, check=True):
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "dff_core", "--db", str(db.path), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _direct(model, db, pooling, item_rows, inputs, frames=2):
    from dff_core.extraction.runner import _load_input
    from storage.datasets import get_dataset

    root = Path(get_dataset(db, "demo").root)
    batch = [_load_input(ExtractItem(int(r.idx), str(r.item_id), r.title,
                                     str(root / r.video_path) if isinstance(r.video_path, str) and r.video_path else None,
                                     str(root / r.cover_path) if isinstance(r.cover_path, str) and r.cover_path else None),
                         inputs, frames, 224) for r in item_rows.itertuples()]
    return model.encode(batch, pooling)


@pytest.mark.parametrize("backbone,extra,shape,pooling,inputs", [
    ("smollm2", ["--inputs", "title"], (31, 576), "all_mean", ("title",)),
    ("minilm", [], (1, 384), "sentence", ("title",)),
    ("efficientnet-lite0", ["--frames", "2", "--batch-size", "4"], (9, 1280), "video_mean", ("frames",)),
])
def test_cli_extract_each_builtin(demo_db, backbone, extra, shape, pooling, inputs):
    from storage.datasets import load_items
    from storage.features import failures, get_feature_set, read_features

    proc = cli(demo_db, "extract", "--dataset", "demo", "--backbone", backbone, "--name", f"x-{backbone}", *extra)
    assert f"x {shape[0]} layers x {shape[1]} dims" in proc.stdout
    fs = get_feature_set(demo_db, f"x-{backbone}", dataset="demo")
    assert (fs.num_layers, fs.dim, fs.pooling, fs.inputs) == (*shape, pooling, list(inputs))
    feats, present = read_features(demo_db, fs)
    items = load_items(demo_db, fs.dataset_id)
    assert feats.shape == (len(items), *shape)
    failed = failures(demo_db, fs)
    assert present.sum() + len(failed) == len(items) and present.sum() >= len(items) - 4
    assert fs.status in ("complete", "partial") and fs.stats["items"] == int(present.sum())
    assert fs.stats["bytes_per_item"] == shape[0] * shape[1] * 2
    # stored vectors equal a direct encode of those items (within float16 rounding)
    rows = items[present].head(3)
    # the stored set says how it was computed (auto: bfloat16 for smollm2 on a CPU with native bf16)
    assert fs.params["device"] == "cpu" and fs.params["quantize"] == "none"
    direct = _direct(load_backbone(backbone, dtype=fs.params["compute_dtype"]), demo_db, pooling, rows, inputs)
    np.testing.assert_allclose(feats[rows.idx.to_numpy()], direct, rtol=2e-3, atol=2e-3 * np.abs(direct).max())
    if failed:  # demo items without any media fail with a reason
        assert all("no video or cover" in r or "title" in r for r in failed.values())


def test_cli_corrupt_video_is_recorded_and_the_rest_stored(tmp_path):
    from data_helpers import write_generic

    from jobs.datasets import import_generic
    from storage import Database
    from storage.features import failures, get_feature_set, read_features

    inter, items_csv = write_generic(tmp_path / "d", n_users=8, n_items=6, seq=5, media=True)
    (tmp_path / "d" / "videos").mkdir()
    for i in (0, 2, 4):
        write_video(tmp_path / "d" / "videos" / f"i{i}.mp4", num_frames=12)
    (tmp_path / "d" / "videos" / "i2.mp4").write_bytes(b"\x00garbage" * 300)
    db = Database(tmp_path / "c.duckdb")
    import_generic(db, "c", inter, items_csv, tmp_path / "d")
    cli(db, "extract", "--dataset", "c", "--backbone", "efficientnet-lite0", "--name", "cnn", "--frames", "2")
    fs = get_feature_set(db, "cnn", dataset="c")
    feats, present = read_features(db, fs)
    reasons = failures(db, fs)
    assert present.sum() == 2 and len(reasons) == 4 and fs.status == "partial"
    assert any("i2.mp4" in r and "cannot decode" in r for r in reasons.values())
    assert np.abs(feats[present]).sum() > 0


def test_resume_after_stop_equals_one_full_run(demo_db):
    from jobs.workflows import run_extraction
    from storage.features import read_features, stored_items

    calls = []
    fs = run_extraction(demo_db, "demo", "minilm", "resumed", inputs=["title"], pooling="all_mean", batch_size=4,
                        should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert fs.status == "cancelled" and len(stored_items(demo_db, fs)) == 8
    fs = run_extraction(demo_db, "demo", "minilm", "resumed", inputs=["title"], pooling="all_mean", batch_size=4)
    full = run_extraction(demo_db, "demo", "minilm", "full", inputs=["title"], pooling="all_mean", batch_size=7)
    assert fs.status == full.status == "complete" and fs.num_layers == 7
    a, pa = read_features(demo_db, fs)
    b, pb = read_features(demo_db, full)
    assert pa.all() and pb.all()
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_caption_route_end_to_end(demo_db, monkeypatch):
    import dff_core.extraction as extraction
    from jobs.workflows import run_extraction
    from storage.features import captions, read_features

    original = extraction.caption_and_embed  # short captions keep the test quick; the route is the same
    monkeypatch.setattr(extraction, "caption_and_embed", lambda *a, **k: original(*a, **{**k, "max_new_tokens": 6}))
    fs = run_extraction(demo_db, "demo", "smollm2", "captions", inputs=["title"], caption=True, batch_size=10)
    assert fs.kind == "caption" and (fs.num_layers, fs.dim) == (1, 384) and fs.status == "complete"
    texts = captions(demo_db, fs)
    feats, present = read_features(demo_db, fs)
    assert present.all() and len(texts) == len(present) and all(t.strip() for t in texts.values())
    idx = sorted(texts)[0]
    direct = load_backbone("minilm").encode([ItemInput("x", title=texts[idx])], "sentence")[0]
    np.testing.assert_allclose(feats[idx], direct, atol=2e-3)


def test_cli_import_features_and_errors(demo_db, tmp_path):
    from storage.datasets import load_items
    from storage.features import get_feature_set, read_features

    items = load_items(demo_db, 1)
    ids = np.asarray(items.item_id.tolist(), dtype=str)
    feats = np.random.default_rng(0).normal(size=(len(ids), 2, 8)).astype(np.float32)
    np.savez(tmp_path / "f.npz", item_ids=ids[::-1], features=feats[::-1])
    proc = cli(demo_db, "import-features", "ext", "--dataset", "demo", "--npz", str(tmp_path / "f.npz"))
    assert "2 layers x 8 dims" in proc.stdout
    stored, present = read_features(demo_db, get_feature_set(demo_db, "ext", dataset="demo"))
    assert present.all()
    np.testing.assert_allclose(stored, feats, atol=1e-2)
    np.savez(tmp_path / "bad.npz", item_ids=np.array(["nope"]), features=np.zeros((1, 2, 8)))
    proc = cli(demo_db, "import-features", "bad", "--dataset", "demo", "--npz", str(tmp_path / "bad.npz"), check=False)
    assert proc.returncode == 2 and "not in dataset" in proc.stderr
    proc = cli(demo_db, "extract", "--dataset", "demo", "--backbone", "nope", "--name", "z", check=False)
    assert proc.returncode == 2 and "known families" in proc.stderr
    proc = cli(demo_db, "features", "--json")
    assert "ext" in {r["name"] for r in json.loads(proc.stdout.strip().splitlines()[-1])}
