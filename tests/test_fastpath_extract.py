"""Fast path, extraction side: the device resolver, compute precision (bfloat16, int8) on tiny offline
checkpoints, what a feature set records about how it was computed, and export-features (the inverse of
import-features). CPU only: CUDA paths are checked through their refusals and a faked CUDA runtime."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data_helpers import write_generic
from dff_core.backbones import family_class, load_backbone, resolve_precision
from dff_core.backbones.base import ItemInput
from dff_core.devices import device_name, resolve_device

BF16_MIN_COSINE = 0.99   # every layer, bfloat16 vs float32 (SmolLM2 on real titles: >= 0.9998, see README)
INT8_MIN_COSINE = 0.95   # every layer, int8 vs float32 on the tiny random checkpoints


def run_cli(*argv) -> int:
    from cli import main

    return main([str(a) for a in argv])


# ------------------------------------------------------------------------------------------- devices

def test_auto_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert device_name(resolve_device("auto")) == "cpu"


def test_cuda_without_cuda_and_bad_specs_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="CUDA is not available on this machine; use --device cpu"):
            resolve_device(spec)
    for spec in ("gpu", "cuda:x", "cuda:", "mps:0"):
        with pytest.raises(ValueError, match="unknown device"):
            resolve_device(spec)


def test_cuda_index_is_checked_against_the_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert device_name(resolve_device("cuda:1")) == "cuda:1"
    with pytest.raises(ValueError, match=r"has 2 CUDA devices \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2")


# ----------------------------------------------------------------------------------------- precision

def test_precision_choices_per_family(monkeypatch):
    import dff_core.backbones.base as base

    smollm2, minilm, qwen = (family_class(f) for f in ("smollm2", "minilm", "qwen2-vl"))
    monkeypatch.setattr(base, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision(smollm2, "cpu", "auto", "none") == ("bfloat16", "none")   # measured default
    assert resolve_precision(minilm, "cpu", "auto", "none") == ("float32", "none")     # not measured: float32
    assert resolve_precision(qwen, "cuda:0", "auto", "none") == ("bfloat16", "none")
    assert resolve_precision(smollm2, "cpu", "float32", "none") == ("float32", "none")
    assert resolve_precision(qwen, "cpu", "auto", "int8") == ("float32", "int8")
    monkeypatch.setattr(base, "cpu_has_native_bf16", lambda: False)  # emulated bf16 is slower: keep float32
    assert resolve_precision(smollm2, "cpu", "auto", "none") == ("float32", "none")
    with pytest.raises(ValueError, match="'minilm' has no int8 path"):
        resolve_precision(minilm, "cpu", "auto", "int8")
    with pytest.raises(ValueError, match="runs on the CPU only"):
        resolve_precision(smollm2, "cuda:0", "auto", "int8")
    with pytest.raises(ValueError, match="use --compute-dtype float32"):
        resolve_precision(smollm2, "cpu", "bfloat16", "int8")
    with pytest.raises(ValueError, match="unknown compute dtype"):
        resolve_precision(smollm2, "cpu", "float8", "none")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A 3-layer, width-32 random Llama with a byte-level tokenizer: the smollm2 adapter's transformers path."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from dff_core.backbones.tiny import byte_level_tokenizer

    out = tmp_path_factory.mktemp("tiny_llama")
    tok = byte_level_tokenizer(["<|endoftext|>"], "{% for m in messages %}{{ m['content'] }}{% endfor %}",
                               eos="<|endoftext|>", pad="<|endoftext|>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    from dff_core.backbones.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint("qwen2-vl", tmp_path_factory.mktemp("tiny_qwen") / "qwen2-vl", seed=0)


TITLES = ["a cat jumps over the sofa", "street food in Chengdu, spicy noodles", "how to fold a paper crane",
          "sunset timelapse", "morning run by the river with my dog and two friends", "piano cover"]


def _layer_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1).mean(0)


def _items(with_frames: bool) -> list[ItemInput]:
    rng = np.random.default_rng(0)
    return [ItemInput(f"i{k}", title=t, frames=rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
                      if with_frames else None) for k, t in enumerate(TITLES)]


@pytest.mark.parametrize("which", ["smollm2", "qwen2-vl"])
def test_bfloat16_and_int8_match_float32(which, tiny_llama, tiny_qwen):
    spec = f"smollm2:{tiny_llama}" if which == "smollm2" else f"qwen2-vl:{tiny_qwen}"
    pooling = "all_mean" if which == "smollm2" else "video_mean"
    items = _items(with_frames=which != "smollm2")
    ref_model = load_backbone(spec, dtype="float32")
    ref = ref_model.encode(items, pooling)
    bf16 = load_backbone(spec, dtype="bfloat16")
    int8 = load_backbone(spec, dtype="float32", quantize="int8")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    quantized = [m for m in int8.quantize_target().modules() if "quantized" in type(m).__module__]
    assert quantized and not any(isinstance(m, torch.nn.Linear) and type(m) is torch.nn.Linear
                                 for m in int8.quantize_target().modules())
    assert int8.quantize == "int8" and ref_model.quantize == "none"
    for model, bound in ((bf16, BF16_MIN_COSINE), (int8, INT8_MIN_COSINE)):
        out = model.encode(items, pooling)
        assert out.shape == ref.shape == (len(items), ref_model.num_layers, ref_model.dim)
        assert out.dtype == np.float32 and np.isfinite(out).all()
        cos = _layer_cosines(ref, out)
        assert cos.min() >= bound, (model.quantize, cos)
        assert not np.array_equal(out, ref)  # really computed differently


def test_int8_needs_a_quantizable_family():
    with pytest.raises(ValueError, match="no int8 path"):
        load_backbone("minilm", quantize="int8")


# ---------------------------------------------------------------------------------- CLI and storage

@pytest.fixture
def small_db(db, tmp_path):
    from jobs.datasets import import_generic

    import_generic(db, "small", *write_generic(tmp_path / "d", n_users=12, n_items=20, seq=6))
    return db


def test_cli_cuda_without_cuda_is_one_line_exit_2(small_db, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for cmd in (["extract"], ["submit", "extract"]):
        code = run_cli("--db", small_db.path, *cmd, "--dataset", "small", "--backbone", "smollm2", "--name", "x",
                       "--device", "cuda")
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert "CUDA is not available" in err and "Traceback" not in err
    code = run_cli("--db", small_db.path, "extract", "--dataset", "small", "--backbone", "minilm", "--name", "x",
                   "--quantize", "int8")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no int8 path" in err and len(err.splitlines()) == 1
    from storage.queue import list_jobs

    assert list_jobs(small_db) == []  # nothing was queued


def test_submit_validator_refuses_cuda_and_keeps_the_choices(small_db, monkeypatch):
    from jobs import submit

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        submit.extract_job_params(small_db, "small", "smollm2", "x", ["title"], device="cuda:0")
    params = submit.extract_job_params(small_db, "small", "smollm2", "x", ["title"], compute_dtype="bfloat16")
    assert (params["device"], params["compute_dtype"], params["quantize"]) == ("auto", "bfloat16", "none")
    assert submit.device_choices() == ["auto", "cpu"]
    # no batch size asked for: the backbone's measured default (smollm2 16, the others 8); asked for: kept
    assert params["batch_size"] == 16
    assert submit.extract_job_params(small_db, "small", "minilm", "m", ["title"])["batch_size"] == 8
    assert submit.extract_job_params(small_db, "small", "smollm2", "y", ["title"], batch_size=4)["batch_size"] == 4


def test_feature_set_records_device_and_precision(small_db, tiny_llama, capsys):
    from jobs.workflows import run_extraction
    from storage.views import feature_set_table

    spec = f"smollm2:{tiny_llama}"
    fs = run_extraction(small_db, "small", spec, "bf16", inputs=["title"], pooling="all_mean", device="auto",
                        compute_dtype="bfloat16")
    q = run_extraction(small_db, "small", spec, "q8", inputs=["title"], pooling="all_mean", device="cpu",
                       compute_dtype="auto", quantize="int8", dtype="float32")
    assert fs.status == q.status == "complete" and fs.stats["items"] == 20
    assert {k: fs.params[k] for k in ("device", "compute_dtype", "quantize")} == \
        {"device": "cpu", "compute_dtype": "bfloat16", "quantize": "none"}
    assert {k: q.params[k] for k in ("device", "compute_dtype", "quantize")} == \
        {"device": "cpu", "compute_dtype": "float32", "quantize": "int8"}
    assert run_cli("--db", small_db.path, "features", "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])}
    assert (rows["bf16"]["device"], rows["bf16"]["compute_dtype"], rows["q8"]["quantize"]) == ("cpu", "bfloat16",
                                                                                               "int8")
    table = feature_set_table(small_db, "small").set_index("name")
    assert table.loc["bf16", "computed"] == "cpu, bfloat16" and table.loc["q8", "computed"] == "cpu, float32 + int8"


# ------------------------------------------------------------------------------------- export-features

def _npz(path, ids, feats):
    np.savez(path, item_ids=np.asarray(ids, dtype=str), features=feats)
    return path


def test_export_is_the_inverse_of_import(small_db, tmp_path, capsys):
    from storage.datasets import get_dataset, load_items

    ids = load_items(small_db, get_dataset(small_db, "small").id)["item_id"].astype(str).tolist()
    rng = np.random.default_rng(1)
    # values that float16 storage keeps exactly, so the round trip must give equal arrays
    feats = rng.normal(size=(len(ids), 4, 8)).astype(np.float16).astype(np.float32)
    for name, storage in (("f", "table"), ("p", "parquet")):
        assert run_cli("--db", small_db.path, "import-features", name, "--dataset", "small", "--npz",
                       _npz(tmp_path / "in.npz", ids, feats), "--storage", storage) == 0
        out = tmp_path / f"out-{name}.npz"
        assert run_cli("--db", small_db.path, "export-features", name, "--dataset", "small", "--npz", out) == 0
        back = np.load(out)
        assert back["features"].dtype == np.float32
        assert back["item_ids"].tolist() == ids
        np.testing.assert_array_equal(back["features"], feats)
        assert back["layers"].tolist() == [0, 1, 2, 3]
    # a layer subset, and a partial set (only some items have vectors)
    assert run_cli("--db", small_db.path, "export-features", "f", "--npz", tmp_path / "l.npz", "--layers", "1,3") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "l.npz")["features"], feats[:, [1, 3]])
    assert run_cli("--db", small_db.path, "import-features", "half", "--dataset", "small", "--npz",
                   _npz(tmp_path / "h.npz", ids[::2], feats[::2])) == 0
    assert run_cli("--db", small_db.path, "export-features", "half", "--npz", tmp_path / "h2.npz") == 0
    assert "10 items without vectors left out" in capsys.readouterr().out
    back = np.load(tmp_path / "h2.npz")
    assert sorted(back["item_ids"].tolist()) == sorted(ids[::2])
    order = [ids[::2].index(i) for i in back["item_ids"]]
    np.testing.assert_array_equal(back["features"], feats[::2][order])


def test_export_bad_input_is_one_line_exit_2(small_db, tmp_path, capsys):
    from storage.datasets import get_dataset, load_items

    ids = load_items(small_db, get_dataset(small_db, "small").id)["item_id"].astype(str).tolist()
    assert run_cli("--db", small_db.path, "import-features", "f", "--dataset", "small", "--npz",
                   _npz(tmp_path / "in.npz", ids, np.ones((len(ids), 3, 4), np.float32))) == 0
    capsys.readouterr()
    cases = [(["nope", "--npz", tmp_path / "x.npz"], "no feature set 'nope'"),
             (["f", "--npz", tmp_path / "x.npz", "--layers", "7"], "layer"),
             (["f", "--npz", tmp_path / "x.txt"], "must end in .npz"),
             (["f", "--npz", tmp_path / "missing" / "x.npz"], "does not exist"),
             (["f", "--dataset", "nosuch", "--npz", tmp_path / "x.npz"], "nosuch")]
    for argv, message in cases:
        code = run_cli("--db", small_db.path, "export-features", *argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and message in err, (argv, err)
        assert "Traceback" not in err
    assert not (tmp_path / "x.npz").exists() and not list(tmp_path.glob("tmp*.npz"))


def test_runner_batches_by_token_count_when_the_backbone_counts_tokens():
    from dff_core.backbones.base import Backbone
    from dff_core.extraction import ExtractItem, extract

    class Counting(Backbone):
        """Tokens = the number of 'x' in a title: character order and token order disagree."""
        family, inputs, poolings, default_pooling, num_layers, dim = "fake", ("title",), ("all_mean",), \
            "all_mean", 1, 2

        def __init__(self):
            self.batches = []

        def text_lengths(self, titles):
            return [t.count("x") for t in titles]

        def encode(self, batch, pooling):
            self.batches.append(sorted(it.title for it in batch))
            return np.ones((len(batch), 1, 2), np.float32)

    titles = ["xxxx", "aaaaaaaaax", "xxx", "aaaaaaaa", "xx", "aaaaaaa"]  # tokens 4, 1, 3, 0, 2, 0
    model = Counting()
    got = {}
    extract(model, [ExtractItem(i, f"i{i}", t) for i, t in enumerate(titles)], batch_size=2,
            on_batch=lambda idx, feats: got.update(dict.fromkeys(idx)))
    assert len(got) == 6
    assert model.batches == [["xxx", "xxxx"], ["aaaaaaaaax", "xx"], ["aaaaaaa", "aaaaaaaa"]]


def test_block_writer_writes_everything_once_in_blocks():
    from jobs.workflows import BlockWriter

    calls = []
    w = BlockWriter(lambda idx, feats: calls.append((list(idx), feats.copy())), max_items=5, max_seconds=1e9)
    for s in range(0, 12, 2):  # six batches of two items
        w.add([s, s + 1], np.full((2, 1, 3), s, np.float32))
    assert [len(i) for i, _ in calls] == [6, 6]
    w.add([12], np.full((1, 1, 3), 12, np.float32))
    w.flush()
    w.flush()  # nothing left: no empty write
    idx = sum((i for i, _ in calls), [])
    feats = np.concatenate([f for _, f in calls])
    assert idx == list(range(13)) and len(calls) == 3
    np.testing.assert_array_equal(feats[:, 0, 0], [0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12])


def test_resume_keeps_the_precision_a_set_was_started_in(small_db, tiny_llama):
    from jobs.workflows import run_extraction

    spec = f"smollm2:{tiny_llama}"
    calls = []
    fs = run_extraction(small_db, "small", spec, "r", inputs=["title"], pooling="all_mean", batch_size=4,
                        compute_dtype="bfloat16", should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert fs.status == "cancelled" and fs.stats["items"] == 8  # the buffered blocks were written on stop
    with pytest.raises(ValueError, match="was started in bfloat16; resume it with --compute-dtype bfloat16"):
        run_extraction(small_db, "small", spec, "r", inputs=["title"], pooling="all_mean", compute_dtype="float32")
    fs = run_extraction(small_db, "small", spec, "r", inputs=["title"], pooling="all_mean", compute_dtype="bfloat16",
                        batch_size=4)  # and with the batch size it started with (reduced-precision vectors depend on it)
    assert fs.status == "complete" and fs.stats["items"] == 20
