"""``python -m dff_core extract`` / ``import-features`` / ``features``: item features into storage."""
from __future__ import annotations

import argparse
import json
import sys

from dff_core.cli import COMMANDS, EXTENSIONS, _db


def add_extract_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True)
    p.add_argument("--backbone", required=True,
                   help="spec: a built-in (smollm2, minilm, efficientnet-lite0) or FAMILY:HF_ID_OR_DIR, "
                        "e.g. qwen2-vl:Qwen/Qwen2-VL-2B-Instruct")
    p.add_argument("--name", required=True, help="name of the feature set")
    p.add_argument("--inputs", default=None, help="comma list of frames,title,cover (default: what the backbone takes)")
    p.add_argument("--frames", type=int, default=8, help="frames sampled uniformly per video")
    p.add_argument("--frame-size", type=int, default=224)
    p.add_argument("--pooling", default=None, help="video_mean | text_mean | all_mean | last (default: backbone's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--caption", action="store_true", help="caption route: the LVLM captions, --text-encoder embeds")
    p.add_argument("--text-encoder", default="minilm")
    add_storage_option(p)
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process; ray: model replicas on a Ray cluster (pip install -r requirements-ray.txt)")
    p.add_argument("--address", default=None, help="Ray cluster address for --engine ray (default: a local instance)")


STORAGE_CHOICES = {"table": "duckdb", "parquet": "parquet"}  # CLI word -> feature_sets.storage


def add_storage_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default="table", choices=list(STORAGE_CHOICES),
                   help="table: vectors inside the database file; parquet: shards beside it (large catalogues)")


def extract_params(db, args: argparse.Namespace) -> dict:
    """Validated keyword arguments for ``workflows.run_extraction`` (checked before anything is queued)."""
    from dff_core.backbones import family_info
    from storage.datasets import get_dataset

    get_dataset(db, args.dataset)
    info = family_info(args.backbone)
    inputs = [s.strip() for s in args.inputs.split(",")] if args.inputs else list(info["default_inputs"])
    bad = [i for i in inputs if i not in info["inputs"]]
    if bad:
        raise ValueError(f"backbone {args.backbone!r} takes {', '.join(info['inputs'])}; not {', '.join(bad)}")
    pooling = args.pooling or info["default_pooling"]
    if pooling not in info["poolings"]:
        raise ValueError(f"backbone {args.backbone!r} pools by {', '.join(info['poolings'])}; not {pooling!r}")
    if args.caption and not info.get("can_caption"):
        raise ValueError(f"backbone {args.backbone!r} cannot write captions; use an LVLM family")
    if args.frames < 1 or args.batch_size < 1:
        raise ValueError("--frames and --batch-size must be at least 1")
    params = {"dataset": args.dataset, "backbone": args.backbone, "name": args.name, "inputs": inputs,
              "num_frames": args.frames, "frame_size": args.frame_size, "pooling": pooling,
              "batch_size": args.batch_size, "dtype": args.dtype, "caption": args.caption,
              "text_encoder": args.text_encoder}
    # scale-out choices are passed only when asked for, so job params of the default path stay as they were
    storage = STORAGE_CHOICES[getattr(args, "storage", None) or "table"]
    engine, address = getattr(args, "engine", None) or "local", getattr(args, "address", None)
    if engine == "ray" and args.caption:
        raise ValueError("the caption route runs on the local engine only; leave out --engine ray")
    if address and engine != "ray":
        raise ValueError("--address is the Ray cluster's; add --engine ray")
    if engine == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ValueError("--engine ray needs Ray: pip install -r requirements-ray.txt")
    extra = {"storage": storage if storage != "duckdb" else None, "engine": engine if engine != "local" else None,
             "address": address}
    return {**params, **{k: v for k, v in extra.items() if v}}


def cmd_extract(args: argparse.Namespace) -> int:
    import sys

    from dff_core.workflows import run_extraction

    db = _db(args)
    params = extract_params(db, args)

    def progress(frac: float, step: str) -> None:
        print(f"\r{100 * frac:5.1f}% {step:50}", end="", file=sys.stderr, flush=True)

    fs = run_extraction(db, **params, progress=progress, log=lambda line: print("\n" + line, file=sys.stderr))
    print(f"\nfeature set {fs.name!r} (id {fs.id}): {fs.stats.get('items')} items x {fs.num_layers} layers x {fs.dim} "
          f"dims, {fs.status}; {fs.stats.get('items_per_second') or 0:.2f} items/s")
    return 0 if fs.status in ("complete", "partial") else 1


def _register(sub) -> None:
    p = sub.add_parser("extract", help="run a frozen backbone over the dataset's items and store all layers")
    add_extract_options(p)

    p = sub.add_parser("import-features", help="store features computed elsewhere (npz: item_ids, features)")
    p.add_argument("name")
    p.add_argument("--dataset", required=True)
    p.add_argument("--npz", required=True)
    p.add_argument("--backbone", default="imported", help="what produced them (shown in the dashboard)")
    add_storage_option(p)

    p = sub.add_parser("features", help="list stored feature sets")
    p.add_argument("--dataset", default=None)
    p.add_argument("--json", action="store_true")


def cmd_import_features(args: argparse.Namespace) -> int:
    from dff_core.workflows import import_features_npz

    fs = import_features_npz(_db(args), args.name, args.dataset, args.npz, backbone=args.backbone,
                             storage=STORAGE_CHOICES[args.storage])
    skipped = fs.stats.get("skipped_unknown_items", 0)
    if skipped:
        print(f"warning: skipped {skipped} item(s) of {args.npz} that are not in dataset {args.dataset!r}",
              file=sys.stderr)
    print(f"stored feature set {fs.name!r} (id {fs.id}): {fs.stats['items']} items x {fs.num_layers} layers x "
          f"{fs.dim} dims, {fs.dtype} ({fs.stats.get('dtype_reason', '')}), {fs.status}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from storage.datasets import get_dataset
    from storage.features import list_feature_sets

    db = _db(args)
    rows = []
    for fs in list_feature_sets(db, args.dataset):
        rows.append({"id": fs.id, "name": fs.name, "dataset": get_dataset(db, fs.dataset_id).name,
                     "backbone": fs.backbone, "kind": fs.kind, "layers": fs.num_layers, "dim": fs.dim,
                     "dtype": fs.dtype, "pooling": fs.pooling, "inputs": fs.inputs, "status": fs.status,
                     "storage": "parquet" if fs.storage == "parquet" else "table",
                     "stats": fs.stats})
    if args.json:
        print(json.dumps(rows, default=str))
    elif not rows:
        print("no feature sets yet — run: python -m dff_core extract --dataset demo --backbone smollm2 --name smollm2")
    else:
        for r in rows:
            print(f"{r['id']:>4} {r['name']:20} {r['dataset']:16} {r['backbone']:28} {r['layers']:>3} x {r['dim']:<5} "
                  f"{r['dtype']:8} {r['status']}")
    return 0


EXTENSIONS.append(_register)
COMMANDS["import-features"] = cmd_import_features
COMMANDS["extract"] = cmd_extract
COMMANDS["features"] = cmd_features
