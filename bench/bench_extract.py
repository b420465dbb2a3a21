"""Extraction benchmark. Prints numbers; asserts nothing (targets live here, not in tests).

1. All layers from ONE forward pass (``output_hidden_states``) versus the naive way, one pass per wanted
   layer: (a) the model truncated after layer l, for l = 0..30 (the cheapest naive way), and (b) full
   passes keeping ``hidden_states[l]`` (timed on a few layers, scaled to 31). Real SmolLM2-135M weights,
   the first N real MicroLens titles (``../shared/data/microlens``). Target: at least 10x. The naive
   vectors are checked against the one-pass ones.
2. Items per second on this machine per built-in backbone, through the whole pipeline (media decoding,
   batching, storage writes) on a small demo dataset, and the bytes per item stored (float16; the
   database file's growth per item as well as the raw vector size).
3. The caption route on real titles (SmolLM2 writes up to 32 tokens greedily, MiniLM embeds): items/s and
   the projected time for the whole MicroLens catalogue (19,220 items).

    .venv/bin/python bench/bench_extract.py [--titles 200] [--batch-size 32] [--naive-layers 31] [--full-layers 3]
        [--skip-naive] [--skip-pipeline] [--caption-titles 32]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see dff_core.backbones: spinning threads on shared CPUs

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MICROLENS = ROOT.parent / "shared" / "data" / "microlens"


def microlens_titles(n: int) -> list[str]:
    path = MICROLENS / "MicroLens-50k_titles.csv"
    if not path.is_file():
        sys.exit(f"the MicroLens bundle is not at {MICROLENS} (needs MicroLens-50k_titles.csv)")
    titles = pd.read_csv(path, nrows=n)["title"].fillna("").astype(str).tolist()
    return [t if t.strip() else "untitled" for t in titles]


def one_pass_vs_naive(titles: list[str], batch_size: int, full_layers: int, naive_layers: int = 31) -> None:
    import torch

    from dff_core.backbones import load_backbone
    from dff_core.backbones.base import pool_layers, pooling_weights

    model = load_backbone("smollm2")
    lm, tok = model.model.model, model.tokenizer
    order = np.argsort([-len(t) for t in titles], kind="stable")
    batches = []
    for s in range(0, len(titles), batch_size):
        enc = tok([titles[i] for i in order[s:s + batch_size]], return_tensors="pt", padding=True, truncation=True,
                  max_length=model.max_length)
        batches.append(enc)
    tokens = sum(int(e["attention_mask"].sum()) for e in batches)
    print(f"SmolLM2-135M ({model.num_layers} hidden states x {model.dim}), {len(titles)} MicroLens titles, "
          f"{tokens} tokens ({tokens / len(titles):.1f}/title), batch {batch_size}, {torch.get_num_threads()} threads")

    def forward(enc, hidden=True):
        with torch.inference_mode():
            return lm(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=hidden,
                      use_cache=False)

    def truncated(enc, layer):
        """Hidden state ``layer`` from a pass that stops after decoder layer ``layer`` (the naive way)."""
        n = lm.config.num_hidden_layers
        if layer == 0:
            with torch.inference_mode():
                return lm.embed_tokens(enc["input_ids"])
        if layer == n:  # the last hidden state is the normalised output of a full pass
            return forward(enc, hidden=False).last_hidden_state
        captured = []
        hook = lm.layers[layer - 1].register_forward_hook(
            lambda mod, args, out: captured.append(out[0] if isinstance(out, tuple) else out))
        lm.config.num_hidden_layers = layer
        try:
            forward(enc, hidden=False)
        finally:
            lm.config.num_hidden_layers = n
            hook.remove()
        return captured[0]

    forward(batches[0])  # warm-up
    t = time.perf_counter()
    one = [pool_layers(forward(e).hidden_states, pooling_weights("all_mean", e["attention_mask"])) for e in batches]
    t_one = time.perf_counter() - t
    one = np.concatenate(one)
    print(f"  one pass, all {model.num_layers} layers:      {t_one:7.2f} s  ({len(titles) / t_one:6.1f} titles/s)")

    # layers for the truncated naive way: all of them, or an evenly spaced subset whose mean depth equals that
    # of all layers (the cost of a pass grows linearly with its depth, so the scaled sum is unbiased)
    layers = (np.arange(model.num_layers) if naive_layers >= model.num_layers else
              np.linspace(0, model.num_layers - 1, naive_layers).round().astype(int))
    t = time.perf_counter()
    worst = 0.0
    for layer in layers:
        got = [pool_layers([truncated(e, int(layer))], pooling_weights("all_mean", e["attention_mask"]))
               for e in batches]
        worst = max(worst, float(np.abs(np.concatenate(got)[:, 0] - one[:, layer]).max()))
    t_trunc = (time.perf_counter() - t) * model.num_layers / len(layers)
    timed = "all 31" if len(layers) == model.num_layers else f"timed {len(layers)}, x{model.num_layers / len(layers):.1f}"
    print(f"  naive, 31 passes truncated at layer l ({timed}): {t_trunc:7.2f} s  -> ratio {t_trunc / t_one:5.1f}x "
          f"(max |diff| vs one pass {worst:.2e})")

    picks = np.linspace(1, model.num_layers - 1, full_layers).round().astype(int)
    t = time.perf_counter()
    for layer in picks:
        [pool_layers([forward(e).hidden_states[layer]], pooling_weights("all_mean", e["attention_mask"])) for e in batches]
    t_full = (time.perf_counter() - t) / len(picks) * model.num_layers
    print(f"  naive, 31 full passes (timed {len(picks)}, x{model.num_layers / len(picks):.1f}): {t_full:7.2f} s  "
          f"-> ratio {t_full / t_one:5.1f}x")


def pipeline(batch_size: int) -> None:
    from dff_core.backbones import load_backbone
    from jobs.datasets import import_generic
    from dff_core.demo import build_demo
    from jobs.workflows import run_extraction
    from storage import Database

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "demo"
        build_demo(folder, n_items=40, n_users=80)
        db = Database(Path(tmp) / "b.duckdb")
        ds = import_generic(db, "demo", folder / "interactions.csv", folder / "items.csv", folder)
        print(f"\npipeline (decode + batch + model + storage) on a {ds.stats['items']}-item demo dataset "
              f"({ds.stats.get('videos')} clips, {ds.stats.get('covers')} covers)")
        runs = [("smollm2", ["title"], "all_mean", {}), ("minilm", ["title"], "sentence", {}),
                ("minilm", ["title"], "all_mean", {}),
                ("efficientnet-lite0", ["frames"], "video_mean", {"num_frames": 8}),
                ("efficientnet-lite0", ["cover"], "video_mean", {})]
        for backbone, inputs, pooling, extra in runs:
            load_backbone(backbone)  # load outside the timing
            db.path.stat()
            before = os.path.getsize(db.path)
            name = f"{backbone}-{'-'.join(inputs)}-{pooling}"
            fs = run_extraction(db, "demo", backbone, name, inputs=inputs, pooling=pooling,
                                batch_size=batch_size if backbone != "efficientnet-lite0" else 8, **extra)
            with db.session() as conn:
                conn.exec_driver_sql("CHECKPOINT")
            grown = os.path.getsize(db.path) - before
            items = fs.stats["items"]
            print(f"  {name:42} {fs.num_layers:>2} x {fs.dim:<4} {fs.stats['items_per_second']:7.1f} items/s  "
                  f"{fs.stats['bytes_per_item']:>6} B/item raw, {grown / max(1, items):8.0f} B/item on disk "
                  f"({items} stored)")


def caption_rate(titles: list[str], batch_size: int, max_new_tokens: int) -> None:
    from dff_core.backbones import load_backbone
    from dff_core.extraction import ExtractItem, caption_and_embed

    lvlm, encoder = load_backbone("smollm2"), load_backbone("minilm")
    items = [ExtractItem(i, str(i), t) for i, t in enumerate(titles)]
    texts: dict[int, str] = {}   # batches come in title-length order: keep each caption with its item
    summary = caption_and_embed(lvlm, encoder, items, inputs=("title",), batch_size=batch_size,
                                max_new_tokens=max_new_tokens, on_batch=lambda idx, f, t: texts.update(zip(idx, t)))
    rate = summary.items_per_second
    print(f"\ncaption route (smollm2 -> minilm, <= {max_new_tokens} new tokens, batch {batch_size}) on {len(titles)} "
          f"MicroLens titles: {rate:.2f} items/s -> {19220 / max(rate, 1e-9) / 60:.0f} min for 19,220 items")
    print(f"  e.g. {titles[0][:70]!r} -> {texts[0][:110]!r}" if 0 in texts else "  no caption for the first title")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--titles", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--full-layers", type=int, default=3, help="layers timed for the full-pass naive way")
    ap.add_argument("--naive-layers", type=int, default=31,
                    help="layers timed for the truncated naive way (evenly spaced; 31 = all)")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--caption-titles", type=int, default=32, help="titles for the caption-route rate (0: skip)")
    ap.add_argument("--caption-tokens", type=int, default=32)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if not args.skip_naive:
        one_pass_vs_naive(microlens_titles(args.titles), args.batch_size, args.full_layers, args.naive_layers)
    if not args.skip_pipeline:
        pipeline(args.batch_size)
    if args.caption_titles:
        caption_rate(microlens_titles(args.caption_titles), args.batch_size, args.caption_tokens)


if __name__ == "__main__":
    main()
