"""``python -m dff_core extract`` / ``import-features`` / ``features``: item features into storage."""
from __future__ import annotations

import argparse
import json

from dff_core.cli import COMMANDS, EXTENSIONS, _db


def _register(sub) -> None:
    p = sub.add_parser("import-features", help="store features computed elsewhere (npz: item_ids, features)")
    p.add_argument("name")
    p.add_argument("--dataset", required=True)
    p.add_argument("--npz", required=True)
    p.add_argument("--backbone", default="imported", help="what produced them (shown in the dashboard)")

    p = sub.add_parser("features", help="list stored feature sets")
    p.add_argument("--dataset", default=None)
    p.add_argument("--json", action="store_true")


def cmd_import_features(args: argparse.Namespace) -> int:
    from dff_core.workflows import import_features_npz

    fs = import_features_npz(_db(args), args.name, args.dataset, args.npz, backbone=args.backbone)
    print(f"stored feature set {fs.name!r} (id {fs.id}): {fs.stats['items']} items x {fs.num_layers} layers x "
          f"{fs.dim} dims, {fs.dtype}, {fs.status}")
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
                     "stats": fs.stats})
    if args.json:
        print(json.dumps(rows, default=str))
    elif not rows:
        print("no feature sets yet — run: python -m dff_core extract --dataset demo --backbone smollm2 --name smollm2")
    else:
        for r in rows:
            print(f"{r['id']:>4} {r['name']:20} {r['dataset']:16} {r['backbone']:28} {r['layers']:>3} x {r['dim']:<5} "
                  f"{r['status']}")
    return 0


EXTENSIONS.append(_register)
COMMANDS["import-features"] = cmd_import_features
COMMANDS["features"] = cmd_features
