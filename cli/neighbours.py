"""``python -m dff_core neighbours``: the nearest items of one item under a representation."""
from __future__ import annotations

import argparse
import json

from cli.core import COMMANDS, EXTENSIONS, _db
from jobs.errors import UsageError


def _register(sub) -> None:
    p = sub.add_parser("neighbours", help="nearest items of an item (cosine) in a feature set layer or a run")
    p.add_argument("--features", metavar="F", help="feature set name or id (caption sets too)")
    p.add_argument("--layer", metavar="L", default=None,
                   help="layer (0 = embedding output), A-B or i,j,k for the mean of several; default: all")
    p.add_argument("--run", metavar="R", type=int, default=None, help="use this finished run's item vectors")
    p.add_argument("--dataset", default=None, help="only needed when several datasets have a feature set F")
    p.add_argument("--item", required=True, help="the query item's id")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--similarity", choices=["centred", "top-removed", "raw"], default="centred",
                   help="cosine of centred vectors (default: the representation's mean removed, as on Explore), "
                        "the same with the 5 dominant directions removed, or raw cosine")
    p.add_argument("--json", action="store_true", help="print one JSON list of {item_id, score}, best first")


def cmd_neighbours(args: argparse.Namespace) -> int:
    from jobs.neighbours import (METRIC_LABELS, describe, feature_source, get_index, load_catalog, neighbours_of,
                                 run_source, score_digits)
    from storage.features import get_feature_set

    db = _db(args)
    if args.run is not None:
        if args.layer is not None:
            raise UsageError("use either --layer (a feature set's layers) or --run (a run's item vectors), not both")
        source = run_source(db, args.run)
        if args.features is not None:
            from storage.runs import get_run

            run = get_run(db, args.run)
            fs = get_feature_set(db, args.features, dataset=args.dataset)
            if run.dataset_id != fs.dataset_id:
                raise UsageError(f"run {run.id} belongs to another dataset than feature set {fs.name!r}")
    elif args.features is None:
        raise UsageError("say what to search in: --features F [--layer L], or --run R")
    else:
        source = feature_source(db, args.features, args.layer, dataset=args.dataset)
    from jobs.neighbours import dataset_of

    catalog = load_catalog(db, dataset_of(db, source))
    rows = neighbours_of(db, source, args.item, args.k, catalog=catalog, metric=args.similarity)
    if args.json:
        print(json.dumps(rows))
        return 0
    index = get_index(db, source, metric=args.similarity)
    titles = dict(zip(catalog.items["item_id"], catalog.items["title"]))
    print(f"{describe(db, source)}: {index.kind} index over {index.size} items"
          + (f" (recall@10 vs exact {index.recall_at_10:.3f})" if index.recall_at_10 is not None else "")
          + f"; score: {METRIC_LABELS[index.metric]}")
    print(f"query {args.item}: {titles.get(args.item, '')}")
    digits = max(4, score_digits([r["score"] for r in rows]))
    print(f"{'rank':>4} {'item':>12} {'score':>{digits + 3}}  title")
    for rank, r in enumerate(rows, 1):
        print(f"{rank:>4} {r['item_id']:>12} {r['score']:{digits + 3}.{digits}f}  {titles.get(r['item_id'], '')[:70]}")
    return 0


EXTENSIONS.append(_register)
COMMANDS["neighbours"] = cmd_neighbours
