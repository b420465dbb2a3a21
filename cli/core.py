"""``python -m dff_core`` (or ``python -m cli``): the parser, the sub-command registry and the dataset commands.

User errors (``jobs.errors``) print one line on stderr (``error: ...``) and exit with status 2 — never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

from jobs.errors import UsageError, user_errors

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


# commands that only read: their storage calls share one open of the file (Database.held_open, at most 3 s), so
# they answer without opening it once per call (0.02-0.2 s each)
QUICK_READS = frozenset({"runs", "jobs", "datasets", "features", "compare", "versus"})


def _db(args: argparse.Namespace):
    db = getattr(args, "_database", None)  # the one main() holds open for a quick read
    if db is None:
        from storage import Database
        db = Database(args.db)
    return db


def _print_json(value) -> None:
    print(json.dumps(value, default=str))


# ------------------------------------------------------------------------------------------ datasets

@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    from jobs.datasets import ensure_demo
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, leave=False)
        bar.n = done
        bar.refresh()

    start = time.perf_counter()
    ds = ensure_demo(_db(args), progress=progress, rebuild=args.rebuild)
    for bar in bars.values():
        bar.close()
    s = ds.stats
    print(f"dataset {ds.name!r}: {s['users']} users, {s['items']} items, {s['interactions']} interactions "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


@command("import-dataset")
def cmd_import_dataset(args: argparse.Namespace) -> int:
    from dff_core.data.importers import Preprocessing
    from jobs.datasets import import_generic, import_microlens

    pre = Preprocessing(min_interactions=args.min_interactions, max_items_per_user=args.max_items,
                        top_items=args.top_items)
    db = _db(args)
    start = time.perf_counter()
    if args.microlens:
        if args.interactions or args.items:
            raise UsageError("use either --microlens DIR or --interactions FILE --items FILE, not both")
        ds = import_microlens(db, args.name, args.microlens, pre)
    elif args.interactions and args.items:
        ds = import_generic(db, args.name, args.interactions, args.items, args.media, pre)
    else:
        raise UsageError("say where the data is: --microlens DIR, or --interactions FILE --items FILE [--media DIR]")
    s = ds.stats
    for warning in ds.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"imported {ds.name!r}: {s['users']} users, {s['items']} items, {s['interactions']} interactions "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


@command("datasets")
def cmd_datasets(args: argparse.Namespace) -> int:
    from storage.datasets import list_datasets

    rows = [{"name": d.name, "id": d.id, "source": d.source, "users": d.stats["users"], "items": d.stats["items"],
             "interactions": d.stats["interactions"], "created_at": str(d.created_at)}
            for d in list_datasets(_db(args))]
    if args.json:
        _print_json(rows)
    elif not rows:
        print("no datasets yet — run: python -m dff_core demo")
    else:
        print(f"{'name':24} {'users':>8} {'items':>8} {'interactions':>13}  source")
        for r in rows:
            print(f"{r['name']:24} {r['users']:>8} {r['items']:>8} {r['interactions']:>13}  {r['source']}")
    return 0


@command("delete-dataset")
def cmd_delete_dataset(args: argparse.Namespace) -> int:
    from storage.removal import delete_dataset

    delete_dataset(_db(args), args.name)
    print(f"deleted dataset {args.name!r} and everything derived from it")
    return 0


@command("check")
def cmd_check(args: argparse.Namespace) -> int:
    """Read the whole database and compare it with what was recorded (``storage.integrity``): exit 0 when it is
    whole, 1 with one line per problem otherwise (damage included: the file, what is wrong, what to do)."""
    from storage import default_db_path
    from storage.integrity import check_database

    path = args.db or default_db_path()
    report = check_database(path)
    if args.json:
        _print_json({"db": str(path), "ok": report.ok, "counts": report.counts, "problems": report.problems})
    else:
        for problem in report.problems:
            print(f"problem: {problem}")
        read = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in report.counts.items())
        print(f"database {path}: " + (f"whole ({read} read, every row and vector)" if report.ok
                                      else f"{len(report.problems)} problem(s)" + (f" ({read} read)" if read else "")))
    return 0 if report.ok else 1


# --------------------------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dff_core", description="DFF Studio, headless.")
    parser.add_argument("--db", default=None, help="database file (default: $DFF_DB or data/dff_studio.duckdb)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="build and store the built-in demo dataset")
    p.add_argument("--rebuild", action="store_true", help="re-render the clips and re-import")

    p = sub.add_parser("import-dataset", help="import a MicroLens folder or a generic CSV/Parquet dataset")
    p.add_argument("name")
    p.add_argument("--microlens", metavar="DIR", help="a folder laid out like MicroLens")
    p.add_argument("--interactions", metavar="FILE", help="CSV or Parquet: user_id,item_id[,timestamp]")
    p.add_argument("--items", metavar="FILE", help="CSV: item_id,title[,video_path,cover_path,...]")
    p.add_argument("--media", metavar="DIR", help="folder that media paths are relative to")
    p.add_argument("--min-interactions", type=int, default=5, help="drop users with fewer (default 5)")
    p.add_argument("--max-items", type=int, default=None, help="keep only each user's last N items")
    p.add_argument("--top-items", type=int, default=None,
                   help="keep only the N most-interacted items (applied first; e.g. a cheaper MicroLens subset)")

    p = sub.add_parser("datasets", help="list stored datasets")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("delete-dataset", help="delete a dataset and everything derived from it")
    p.add_argument("name")

    p = sub.add_parser("check", help="verify the database: readable, row counts as recorded, feature sets and "
                                     "runs whole (exit 1 on a problem)")
    p.add_argument("--json", action="store_true")

    for extend in EXTENSIONS:
        extend(sub)
    for command_parser in sub.choices.values():  # --db FILE before or after the command name, alike
        if "--db" not in command_parser._option_string_actions:
            command_parser.add_argument("--db", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


# other modules add their sub-commands here: fn(subparsers) -> None
EXTENSIONS: list[Callable] = []


def main(argv: list[str] | None = None) -> int:
    _load_extensions()
    args = build_parser().parse_args(argv)
    try:
        if args.command in QUICK_READS:
            args._database = _db(args)
            with args._database.held_open():
                return COMMANDS[args.command](args)
        return COMMANDS[args.command](args)
    except user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _load_extensions() -> None:
    """Import the modules that register further sub-commands (extraction, training, jobs, ...)."""
    import importlib

    for module in ("cli.extract", "cli.train", "cli.jobs", "cli.tiny",
                   "cli.neighbours", "cli.study", "cli.runs", "cli.demo", "cli.versus"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
