"""The house rules: which layer may import which, and no import circles among product modules.

One line per layer (what the imports below enforce):

* ``dff_core`` — the science: parsing and splits, backbones, extraction, models, training, evaluation,
  neighbours, probes, the study's maths. Imports only itself.
* ``storage`` — every table, the job table included. Imports only itself.
* ``jobs`` — orchestration: workflows between the science and storage, validators and enqueuers for every
  action, workers. Imports ``dff_core`` and ``storage``.
* front ends — ``app.py`` + ``pages`` (the dashboard) and ``cli`` (the command line). Import ``jobs`` for
  actions, ``storage`` read models for views, and ``dff_core`` for its names and choices; never each other.

Every import counts, wherever it stands (module level, inside a function, under ``TYPE_CHECKING``): a lazy
import still runs, so it still ties the layers together. The one exception is ``dff_core/__main__.py``, the
entry shim that keeps ``python -m dff_core`` working by running the CLI (nothing imports a ``__main__``).
Importing ``a.b.c`` counts as an edge to ``a.b.c`` only, not to the packages above it.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dff_core", "storage", "jobs", "pages", "cli")
TOP_MODULES = ("app", "serve")
LAYER = {"dff_core": "science", "storage": "storage", "jobs": "jobs", "pages": "dashboard", "app": "dashboard", "serve": "dashboard",
         "cli": "cli"}
MAY_IMPORT = {
    "science": {"science"},
    "storage": {"storage"},
    "jobs": {"jobs", "science", "storage"},
    "dashboard": {"dashboard", "jobs", "storage", "science"},
    "cli": {"cli", "jobs", "storage", "science"},
}
ALLOWED_FILES = {"dff_core/__main__.py": {"cli"}}  # the entry shim, by file name


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def product_files(root: Path) -> dict[str, Path]:
    """``{module name: file}`` for every product module under ``root`` (tests, bench and docs are not product)."""
    files = {m: root / f"{m}.py" for m in TOP_MODULES if (root / f"{m}.py").exists()}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")) if (root / package).is_dir() else []:
            files[_module_name(path, root)] = path
    return files


def _longest_known(name: str, files: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in files:
            return ".".join(parts[:n])
    return None


def module_imports(tree: ast.AST, module: str, is_package: bool, files: dict[str, Path]) -> set[str]:
    """The product modules ``module`` imports, at any depth, relative imports resolved: ``from pkg import
    name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(filter(None, (_longest_known(a.name, files) for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                target = f"{prefix}.{alias.name}"
                out.add(target if target in files else _longest_known(prefix, files))
    return {m for m in out if m and m != module}


def import_graph(root: Path) -> dict[str, set[str]]:
    """``{module: product modules it imports}`` for every product module under ``root``."""
    files = product_files(root)
    return {module: module_imports(ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py", files)
            for module, path in files.items()}


def layer_of(module: str) -> str | None:
    return LAYER.get(module.split(".")[0])


def violations(graph: dict[str, set[str]], files: dict[str, Path] | None = None, root: Path = ROOT) -> list[str]:
    """``"a -> b (layer x may not import layer y)"`` for every forbidden edge."""
    out = []
    for module, targets in sorted(graph.items()):
        allowed_extra = set()
        if files is not None and module in files:
            allowed_extra = ALLOWED_FILES.get(files[module].relative_to(root).as_posix(), set())
        for target in sorted(targets):
            src, dst = layer_of(module), layer_of(target)
            if dst in MAY_IMPORT[src] or target.split(".")[0] in allowed_extra:
                continue
            out.append(f"{module} -> {target} ({src} may not import {dst})")
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def check(root: Path) -> list[str]:
    files = product_files(root)
    graph = import_graph(root)
    return violations(graph, files, root) + [f"circle: {' <-> '.join(c)}" for c in circles(graph)]


# ------------------------------------------------------------------------------------------------ tests

def test_the_house_obeys_its_layers_and_has_no_circles():
    assert check(ROOT) == []


def test_the_checker_sees_every_layer():
    graph = import_graph(ROOT)
    assert {layer_of(m) for m in graph} == {"science", "storage", "jobs", "dashboard", "cli"}
    assert "jobs.workflows" in graph["jobs.handlers"]  # imported inside the handlers: lazy imports count
    assert graph["dff_core.__main__"] == {"cli.__main__"}  # the entry shim, the one allowed exception


def test_storage_names_the_same_metrics_as_the_science():
    """``storage.views`` may not import ``dff_core.metric_names``, so it keeps the run columns' tuple; this
    keeps the two from drifting apart."""
    from dff_core.metric_names import METRICS
    from storage import views

    assert views.METRICS == METRICS


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


CLEAN = {
    "dff_core/__init__.py": "",
    "dff_core/maths.py": "import numpy\n",
    "dff_core/__main__.py": "import cli.__main__\n",
    "storage/__init__.py": "from storage.db import Database\n",
    "storage/db.py": "class Database: ...\n",
    "jobs/__init__.py": "",
    "jobs/work.py": "from dff_core import maths\nfrom storage import Database\n",
    "cli/__init__.py": "",
    "cli/__main__.py": "from jobs import work\n",
    "pages/__init__.py": "",
    "pages/home.py": "from jobs.work import run\nfrom storage import Database\n",
    "app.py": "from pages import home\n",
}


def test_a_clean_tree_passes(tmp_path):
    assert check(_tree(tmp_path, CLEAN)) == []


def test_a_planted_lazy_upward_import_fails(tmp_path):
    """storage importing jobs inside a function (the old ``storage.views`` -> ``jobs.queue``) is caught."""
    root = _tree(tmp_path, {**CLEAN, "storage/views.py": """
        def counts(db):
            from jobs.work import list_jobs
            return list_jobs(db)
        """})
    assert check(root) == ["storage.views -> jobs.work (storage may not import jobs)"]


def test_a_planted_science_to_storage_import_fails(tmp_path):
    root = _tree(tmp_path, {**CLEAN, "dff_core/probes.py": "from storage.db import Database\n"})
    assert check(root) == ["dff_core.probes -> storage.db (science may not import storage)"]


def test_front_ends_do_not_import_each_other_and_jobs_no_front_end(tmp_path):
    root = _tree(tmp_path, {**CLEAN, "jobs/runner.py": "from cli.__main__ import main\n",
                            "pages/common.py": "import cli.__main__\n"})
    assert check(root) == ["jobs.runner -> cli.__main__ (jobs may not import cli)",
                           "pages.common -> cli.__main__ (dashboard may not import cli)"]


def test_a_planted_circle_fails(tmp_path):
    """Two modules of one layer that import each other (the old ``jobs.handlers`` <-> ``jobs.runner``)."""
    root = _tree(tmp_path, {**CLEAN, "jobs/handlers.py": "from jobs.runner import JobContext\n",
                            "jobs/runner.py": "def run():\n    from jobs.handlers import HANDLERS\n"})
    assert check(root) == ["circle: jobs.handlers <-> jobs.runner"]


def test_relative_imports_resolve(tmp_path):
    root = _tree(tmp_path, {**CLEAN, "storage/features.py": "from .db import Database\n",
                            "storage/parquet.py": "from . import features\n",
                            "dff_core/sub/__init__.py": "from .inner import x\n",
                            "dff_core/sub/inner.py": "from ..maths import numpy\n"})
    graph = import_graph(root)
    assert graph["storage.features"] == {"storage.db"}
    assert graph["storage.parquet"] == {"storage.features"}
    assert graph["dff_core.sub"] == {"dff_core.sub.inner"}
    assert graph["dff_core.sub.inner"] == {"dff_core.maths"}


CONFLICT_MARKERS = ("<<<<<<< ", ">>>>>>> ")


def conflict_markers(root: Path) -> list[str]:
    """``file:line`` of every merge-conflict marker left in tracked text (a README once shipped with one)."""
    import subprocess
    try:
        files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True,
                               check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file outside hidden folders
        files = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    found = []
    for name in files:
        if not name.endswith((".py", ".md", ".txt", ".toml", ".cfg", ".yml", ".yaml", ".sh", ".csv")):
            continue
        try:
            lines = (root / name).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        found += [f"{name}:{i}" for i, line in enumerate(lines, 1)
                  if line.startswith(CONFLICT_MARKERS) or line == "======="]
    return found


def test_no_merge_conflict_markers_are_left():
    assert conflict_markers(ROOT) == []


def test_a_planted_conflict_marker_is_found(tmp_path):
    import subprocess
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "README.md").write_text("a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> branch\n")
    subprocess.run(["git", "add", "README.md"], cwd=tmp_path, check=True)
    assert conflict_markers(tmp_path) == ["README.md:2", "README.md:4", "README.md:6"]
