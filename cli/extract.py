"""``python -m dff_core extract`` / ``import-features`` / ``delete-features`` / ``features``: item features into storage."""
from __future__ import annotations

import argparse
import json
import sys

from cli.core import COMMANDS, EXTENSIONS, _db

# dff_core.devices.DEVICE_HELP, spelled here because that module imports torch and building the parser must not
# (a command that trains nothing starts without torch; tests/test_conventions_cli.py keeps the two equal)
DEVICE_HELP = "auto (CUDA when available, else CPU) | cpu | cuda | cuda:N"
STORAGE_WORDS = ("table", "parquet")  # jobs.submit.STORAGE_CHOICES' keys (that module loads storage: imported lazily)


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
    p.add_argument("--batch-size", type=int, default=None, help="items per forward pass (default: the backbone's; "
                                                                   "smollm2 16, the others 8)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"],
                   help="how the vectors are STORED (pooling always accumulates in float32)")
    add_compute_options(p)
    p.add_argument("--caption", action="store_true", help="caption route: the LVLM captions, --text-encoder embeds")
    p.add_argument("--text-encoder", default="minilm")
    add_storage_option(p)
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process; ray: model replicas on a Ray cluster (pip install -r requirements-ray.txt)")
    p.add_argument("--address", default=None, help="Ray cluster address for --engine ray (default: a local instance)")


def add_compute_options(p: argparse.ArgumentParser) -> None:
    """Where and in what precision the backbone runs (README "Fast path: extraction")."""
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--compute-dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="precision of the forward pass; auto: bfloat16 on CUDA and, for smollm2, on a CPU with "
                        "native bfloat16 (AVX512-BF16/AMX), else float32")
    p.add_argument("--quantize", default="none", choices=["none", "int8"],
                   help="int8: dynamic quantisation of the language model's linear layers (CPU, float32; "
                        "smollm2 and the LVLM families)")


def add_storage_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default="table", choices=list(STORAGE_WORDS),
                   help="table: vectors inside the database file; parquet: shards beside it (large catalogues)")


def extract_request(args: argparse.Namespace) -> dict:
    """The extract options as keyword arguments of ``jobs.submit.extract_job_params`` (the one validator)."""
    return {"dataset": args.dataset, "backbone": args.backbone, "name": args.name,
            "inputs": [s.strip() for s in args.inputs.split(",")] if args.inputs else None,
            "num_frames": args.frames, "frame_size": args.frame_size, "pooling": args.pooling,
            "batch_size": args.batch_size, "dtype": args.dtype, "caption": args.caption,
            "text_encoder": args.text_encoder, "device": args.device, "compute_dtype": args.compute_dtype,
            "quantize": args.quantize, "storage": args.storage, "engine": args.engine, "address": args.address}


def cmd_extract(args: argparse.Namespace) -> int:
    from jobs.submit import extract_job_params
    from jobs.workflows import run_extraction

    from cli.progress import ProgressBar, quiet_library_bars

    quiet_library_bars()
    db = _db(args)
    params = extract_job_params(db, **extract_request(args))
    with ProgressBar(f"extract {args.name}") as bar:  # a tqdm bar on stderr (cli/progress.py)
        fs = run_extraction(db, **params, progress=bar, log=bar.log)
    print(f"feature set {fs.name!r} (id {fs.id}): {fs.stats.get('items')} items x {fs.num_layers} layers x {fs.dim} "
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

    p = sub.add_parser("export-features", help="write a stored feature set to an npz (item_ids, features)")
    p.add_argument("name")
    p.add_argument("--dataset", default=None, help="the dataset (needed when several have a set of this name)")
    p.add_argument("--npz", required=True, help="output file (.npz): item_ids [n], features [n, layers, dim] float32")
    p.add_argument("--layers", default=None, help="all (default) | A-B | i,j,k (0 = embedding output)")

    p = sub.add_parser("delete-features", help="delete a feature set (a stuck import too); runs keep their results")
    p.add_argument("name")
    p.add_argument("--dataset", default=None, help="the dataset (needed when several have a set of this name)")

    p = sub.add_parser("features", help="list stored feature sets")
    p.add_argument("--dataset", default=None)
    p.add_argument("--json", action="store_true")


def cmd_import_features(args: argparse.Namespace) -> int:
    from jobs.submit import STORAGE_CHOICES
    from jobs.workflows import import_features_npz

    fs = import_features_npz(_db(args), args.name, args.dataset, args.npz, backbone=args.backbone,
                             storage=STORAGE_CHOICES[args.storage])
    skipped = fs.stats.get("skipped_unknown_items", 0)
    if skipped:
        print(f"warning: skipped {skipped} item(s) of {args.npz} that are not in dataset {args.dataset!r}",
              file=sys.stderr)
    print(f"stored feature set {fs.name!r} (id {fs.id}): {fs.stats['items']} items x {fs.num_layers} layers x "
          f"{fs.dim} dims, {fs.dtype} ({fs.stats.get('dtype_reason', '')}), {fs.status}")
    return 0


def cmd_export_features(args: argparse.Namespace) -> int:
    from jobs.workflows import export_features_npz

    out = export_features_npz(_db(args), args.name, args.npz, dataset=args.dataset, layers=args.layers)
    print(f"wrote {out['path']}: {out['items']} items x {len(out['layers'])} layers x {out['dim']} dims (float32)"
          + (f"; {out['missing']} items without vectors left out" if out["missing"] else ""))
    return 0


def cmd_delete_features(args: argparse.Namespace) -> int:
    from storage.removal import delete_features

    fs = delete_features(_db(args), args.name, dataset=args.dataset)
    print(f"deleted feature set {fs.name!r} (id {fs.id})")
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
                     "device": (fs.params or {}).get("device"), "compute_dtype": (fs.params or {}).get("compute_dtype"),
                     "quantize": (fs.params or {}).get("quantize"), "stats": fs.stats})
    if args.json:
        print(json.dumps(rows, default=str))
    elif not rows:
        print("no feature sets yet — run: python -m dff_core extract --dataset demo --backbone smollm2 --name smollm2")
    else:
        for r in rows:
            ran = " ".join(str(v) for v in (r["device"], r["compute_dtype"]) if v) + \
                (" int8" if r["quantize"] == "int8" else "")
            print(f"{r['id']:>4} {r['name']:20} {r['dataset']:16} {r['backbone']:28} {r['layers']:>3} x {r['dim']:<5} "
                  f"{r['dtype']:8} {r['status']:9} {ran or '-'}")
    return 0


EXTENSIONS.append(_register)
COMMANDS["import-features"] = cmd_import_features
COMMANDS["delete-features"] = cmd_delete_features
COMMANDS["extract"] = cmd_extract
COMMANDS["features"] = cmd_features
COMMANDS["export-features"] = cmd_export_features
