"""A first visit must not wait for torch (seconds to import on a 2-core machine; ``bench/bench_pages.py``).

Every page except a chosen run or user on Explore renders from stored data: listing the backbone registry, the
training choices, the strategies and the devices must not import torch or transformers. Each check runs in a
fresh interpreter, so an import made by another test cannot hide one made here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PAGES_SCRIPT = r"""
import json, sys
from streamlit.testing.v1 import AppTest
out = {}
at = AppTest.from_file(sys.argv[1], default_timeout=120).run()
out["Home"] = [sys.modules.get("torch") is not None, sys.modules.get("transformers") is not None,
               [e.value for e in at.exception], [t.value for t in at.title]]
for page in ("data", "extract", "train", "jobs", "compare", "explore", "study"):
    at.switch_page(f"pages/{page}.py").run()
    out[page] = [sys.modules.get("torch") is not None, sys.modules.get("transformers") is not None,
                 [e.value for e in at.exception], [t.value for t in at.title]]
print(json.dumps(out))
"""


def test_registry_lists_every_family_without_importing_torch():
    code = ("import sys, json; from dff_core.backbones import list_families; f = list_families(); "
            "print(json.dumps([[x['family'], x['available']] for x in f] + "
            "[['torch' in sys.modules, 'transformers' in sys.modules]]))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                    check=True).stdout.strip().splitlines()[-1])
    *families, (torch_loaded, transformers_loaded) = out
    assert dict(families) == {"smollm2": True, "minilm": True, "efficientnet-lite0": True, "qwen2-vl": True,
                              "qwen2.5-vl": True, "qwen3-vl": True, "llava-onevision": True, "smolvlm": True}
    assert (torch_loaded, transformers_loaded) == (False, False)


@pytest.mark.parametrize("module", ["dff_core.train.defaults", "dff_core.models.strategies"])
def test_choice_tables_import_without_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_page_renders_without_torch_on_a_demo_database(tmp_path):
    """The demo dataset stored and one finished run (its checkpoint on disk, so Explore lists it as a source):
    every page renders (its title, no exception) and nothing has imported torch or transformers by the end."""
    env = {**os.environ, "DFF_DB": str(tmp_path / "db.duckdb"), "DFF_WORKER": "0", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "dff_core", "demo"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "dff_core", "train", "--dataset", "demo", "--strategy", "id", "--epochs", "1",
                    "--hidden", "16"], cwd=ROOT, env=env, check=True, capture_output=True)
    assert list((tmp_path / "checkpoints" / "db").rglob("checkpoint.pt")), "the run left no checkpoint"
    res = subprocess.run([sys.executable, "-c", PAGES_SCRIPT, str(ROOT / "app.py")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    pages = json.loads(res.stdout.strip().splitlines()[-1])
    assert list(pages) == ["Home", "data", "extract", "train", "jobs", "compare", "explore", "study"]
    for name, (torch_loaded, transformers_loaded, errors, titles) in pages.items():
        assert errors == [], (name, errors)
        assert titles, name
        assert (torch_loaded, transformers_loaded) == (False, False), name


def test_serve_warms_the_pages_imports_without_torch(tmp_path):
    """``serve.py`` imports what the pages import — the lazy ones too — before Streamlit serves, and never torch."""
    env = {**os.environ, "DFF_DB": str(tmp_path / "db.duckdb"), "PYTHONPATH": str(ROOT)}
    script = ("import json, sys, serve; done = serve.warm(); "
              "print(json.dumps([done, 'torch' in sys.modules, 'transformers' in sys.modules]))")
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    done, torch_loaded, transformers_loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert (torch_loaded, transformers_loaded) == (False, False)
    for module in ("pandas", "plotly.express", "pages.common", "jobs.submit", "storage.views", "jobs.neighbours",
                   "jobs.probes", "jobs.datasets"):
        assert module in done, module
    assert (tmp_path / "db.duckdb").exists()  # the schema is migrated before the first visit


def test_serve_starts_streamlit_out_of_pages_directory_mode(tmp_path):
    """A ``pages/`` folder would make a fresh server's first run the page file alone, then a rerun through app.py
    (0.3-0.5 s of the first visit); serve.py switches that mode off before handing over to ``streamlit run``."""
    env = {**os.environ, "DFF_DB": str(tmp_path / "db.duckdb"), "PYTHONPATH": str(ROOT)}
    script = ("import json, sys, serve\n"
              "import streamlit.web.cli as cli\n"
              "from streamlit.runtime.pages_manager import PagesManager\n"
              "seen = []\n"
              "cli.main = lambda: seen.append([sys.argv[1:3], PagesManager.uses_pages_directory]) or 0\n"
              "code = serve.main(['--server.port', '1'])\n"
              "print(json.dumps([code, seen]))\n")
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    code, seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert code == 0 and seen == [[["run", str(ROOT / "app.py")], False]]
