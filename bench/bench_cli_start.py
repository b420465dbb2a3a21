"""Start-up of the commands that train nothing: wall time of ``python -m dff_core CMD`` from launch to exit.

Runs each command (``runs``, ``jobs``, ``datasets``, ``features``, ``--help``) ``--repeats`` times in a fresh
interpreter, interleaved with a bare ``python -c pass`` (the floor: the interpreter alone) and, with
``--before DIR``, the same command from an older checkout at DIR, and prints the median and range per command and
whether torch was imported.

    PYTHONPATH=. .venv/bin/python bench/bench_cli_start.py [--db FILE] [--repeats 7] [--before DIR]

Without ``--db`` it builds a small database in a temporary folder (a dataset, a feature set, one finished run,
one queued job), so every command reads rows. Prints numbers; asserts nothing (the no-torch rule is a test:
tests/test_conventions_cli.py).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = (["runs"], ["jobs"], ["datasets"], ["features"], ["--help"])
# reports whether torch was loaded, without changing how the command runs (``-X importtime`` would slow it)
PROBE = ("import runpy, sys\n"
         "sys.argv = ['python -m dff_core', *sys.argv[1:]]\n"
         "try:\n    runpy.run_module('dff_core', run_name='__main__', alter_sys=True)\n"
         "except SystemExit:\n    pass\n"
         "print('@@torch' if 'torch' in sys.modules else '@@no-torch')\n")


def small_db(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    import numpy as np

    from data_helpers import write_generic
    from jobs.datasets import import_generic
    from jobs.workflows import import_features_npz, run_training
    from storage import Database
    from storage.queue import enqueue

    db = Database(folder / "bench.duckdb")
    import_generic(db, "small", *write_generic(folder / "d", n_users=200, n_items=50, seq=8))
    np.savez(folder / "f.npz", item_ids=np.array([f"i{i}" for i in range(50)]),
             features=np.random.default_rng(0).normal(size=(50, 4, 16)).astype(np.float32))
    import_features_npz(db, "feats", "small", folder / "f.npz", backbone="synthetic")
    run_training(db, "small", "id", settings={"epochs": 1, "patience": 0, "hidden": 16, "num_threads": 1}, seed=1)
    enqueue(db, "train", {"dataset": "small", "strategy": "id"})
    return db.path


def wall(cmd: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def torch_loaded(checkout: Path, args: list[str], env: dict) -> bool:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=checkout, env=env, capture_output=True,
                         text=True).stdout
    return "@@torch" in out


def fmt(samples: list[float]) -> str:
    return f"{statistics.median(samples):5.2f} s ({min(samples):.2f}-{max(samples):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=None, help="a database to read (default: a small one built here)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--before", default=None, metavar="DIR", help="an older checkout to time the same commands in")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="bench_cli_")
    db = Path(args.db).resolve() if args.db else small_db(Path(tmp.name))
    checkouts = {"ours": ROOT}
    if args.before:
        checkouts["before"] = Path(args.before).resolve()
    print(f"python {sys.version.split()[0]} ({sys.executable}), db {db}, {args.repeats} repeats, "
          f"load {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")

    bare = []
    rows: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits every column alike
        bare.append(wall([sys.executable, "-c", "pass"], ROOT, dict(os.environ)))
        for label, checkout in checkouts.items():
            env = dict(os.environ, PYTHONPATH=str(checkout))
            for cmd in COMMANDS:
                rows.setdefault((label, " ".join(cmd)), []).append(
                    wall([sys.executable, "-m", "dff_core", *cmd, "--db", str(db)], checkout, env))
    print(f"{'python -c pass':28} {fmt(bare)}   (the floor)")
    for (label, cmd), samples in rows.items():
        checkout = checkouts[label]
        env = dict(os.environ, PYTHONPATH=str(checkout))
        torch = torch_loaded(checkout, [*cmd.split(), "--db", str(db)], env)
        print(f"{label + ': ' + cmd:28} {fmt(samples)}   +{statistics.median(samples) - statistics.median(bare):.2f} "
              f"s over the floor, torch {'imported' if torch else 'not imported'}")
    print(f"(samples: load at the end {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
