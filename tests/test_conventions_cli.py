"""Commands that train nothing start without torch: ``runs``, ``jobs``, ``datasets``, ``features``, ``compare``
and ``--help`` are run in a fresh interpreter (the way ``python -m dff_core`` runs them) on a database with a
dataset, a feature set, a finished run and a job, and neither torch nor transformers may be imported.

No timing here (bench/bench_cli_start.py prints the start times)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from data_helpers import ROOT, dataset_with_features

# runs ``python -m dff_core ARGS`` inside this interpreter, then prints which heavy libraries it had imported
WRAPPER = """
import json, runpy, sys
sys.argv = ["python -m dff_core", *json.loads(sys.argv[1])]
code = 0
try:
    runpy.run_module("dff_core", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "transformers", "scipy", "streamlit") if m in sys.modules)
slow = sorted(m for m in ("pandas", "dff_core.backbones") if m in sys.modules)
print("\\n@@" + json.dumps({"code": code, "heavy": heavy, "slow": slow}))
"""


@pytest.fixture(scope="module")
def filled_db(tmp_path_factory):
    from jobs.workflows import run_training
    from storage.queue import enqueue

    db = dataset_with_features(tmp_path_factory.mktemp("conv_cli"), n_users=40, n_items=20, seq=6, layers=3, dim=8,
                               dataset="small", features="feats", backbone="synthetic", db_file="c.duckdb")
    run = run_training(db, "small", "id", settings={"epochs": 1, "patience": 0, "hidden": 8, "batch_size": 32,
                                                     "max_len": 6, "num_threads": 1}, seed=1, study="s")
    assert run.status == "done"
    enqueue(db, "train", {"dataset": "small", "strategy": "id"})
    return db


def _run_cli(args: list[str]) -> tuple[dict, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", WRAPPER, json.dumps(args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert "@@" in proc.stdout, proc.stderr
    out, _, marker = proc.stdout.rpartition("\n@@")
    return json.loads(marker), out


@pytest.mark.parametrize("args", [["runs"], ["jobs"], ["datasets"], ["features"], ["compare"],
                                  ["runs", "--json"], ["datasets", "--json"]])
def test_commands_that_train_nothing_import_no_torch(filled_db, args):
    result, out = _run_cli(["--db", str(filled_db.path), *args])
    assert result["code"] == 0, out
    assert out.strip() and not out.lstrip().startswith("no ")  # it read stored rows
    assert result["heavy"] == [], f"{' '.join(args)} imported {result['heavy']}"
    if args[0] != "compare":   # the plain reads build no data frame and no backbone (storage.lazy, cli.tiny)
        assert result["slow"] == [], f"{' '.join(args)} imported {result['slow']}"


def test_tiny_checkpoint_families_spelled_in_the_cli_are_the_backbones():
    from cli.tiny import TINY_FAMILIES as in_cli
    from dff_core.backbones.tiny import TINY_FAMILIES

    assert in_cli == TINY_FAMILIES


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["extract", "--help"], ["study", "--help"]])
def test_help_imports_no_torch(args):
    result, out = _run_cli(args)
    assert result["code"] == 0 and "usage:" in out
    assert result["heavy"] == [], f"{' '.join(args)} imported {result['heavy']}"


def test_cli_device_help_is_the_resolvers():
    """cli.extract spells the device help itself (dff_core.devices imports torch); the two stay equal."""
    from cli.extract import DEVICE_HELP, STORAGE_WORDS
    from dff_core.devices import DEVICE_HELP as resolvers
    from jobs.submit import STORAGE_CHOICES

    assert DEVICE_HELP == resolvers
    assert tuple(STORAGE_CHOICES) == STORAGE_WORDS


def test_parser_choices_match_the_science():
    """The parser's strategy, sampler and default choices come from torch-free modules equal to the models'."""
    import cli
    from dff_core.models.item_encoders import STRATEGIES
    from dff_core.study.plan import DEFAULT_SETTINGS
    from dff_core.train.negatives import SAMPLERS

    cli.core._load_extensions()
    parser = cli.core.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    train = sub.choices["train"]
    assert tuple(train._option_string_actions["--strategy"].choices) == tuple(STRATEGIES)
    assert tuple(train._option_string_actions["--negative-sampler"].choices) == tuple(SAMPLERS)
    study = sub.choices["study"]
    assert study._option_string_actions["--epochs"].default == DEFAULT_SETTINGS["epochs"]
    assert study._option_string_actions["--patience"].default == DEFAULT_SETTINGS["patience"]


@pytest.mark.parametrize("args", [["runs"], ["jobs"], ["datasets"], ["features"], ["compare"]])
def test_quick_reads_share_one_open_of_the_database(filled_db, args, monkeypatch, capsys):
    """Every storage session of a quick read runs inside one hold of the file (Database.held_open), instead of
    opening the file per call."""
    import cli
    from storage import Database

    held = []
    real = Database.session

    def session(self):
        held.append(getattr(self._held, "hold", None) is not None)
        return real(self)

    monkeypatch.setattr(Database, "session", session)
    assert cli.main(["--db", str(filled_db.path), *args]) == 0
    assert capsys.readouterr().out.strip()
    assert held and all(held), f"{args[0]}: {held.count(False)} of {len(held)} sessions opened the file anew"
