"""Start the dashboard with its imports already done: ``python serve.py [streamlit run options]``.

Why: Streamlit imports a page's modules on the first request that needs them, so the first visitor of a fresh
server waits for pandas, SQLAlchemy, DuckDB, plotly and this project's modules (1.5-3 s on a 2-core machine)
on top of the page itself. This launcher imports every module the pages import (read from the page files, so the
list cannot drift), opens the database once (its schema migrated), then hands over to
``streamlit run app.py`` in the same process. Nothing here imports torch: the pages do not (tests/test_first_visit.py).
``streamlit run app.py`` works too, with a slower first visit.

It then freezes what exists (``gc.freeze``): Streamlit runs a full garbage collection after every script run
(``runner.postScriptGC``), and with the pages' libraries loaded that pass walked ~180,000 long-lived objects
(0.08 s per run, measured: every page view and widget click, twice on a fresh server's first visit). Frozen
objects are skipped, so the pass only sees what a page run allocated.

And it starts Streamlit out of its pages-directory mode. A ``pages/`` folder beside ``app.py`` makes Streamlit run a
fresh server's first request as the requested page file alone until ``st.navigation`` has run once; app.py then
has to leave that mode with a rerun (``pages.common.leave_pages_directory_mode``), which cost the first visitor
0.3-0.5 s. This app always navigates with ``st.navigation``, so the mode is switched off before the server starts.

Those three use Streamlit internals (``STREAMLIT_INTERNALS``). When an upgrade has moved one of them, none of this
is attempted: one warning line names what moved and the server starts as a plain ``streamlit run app.py`` (the
same app, a slower first visit), instead of a traceback or a half-warmed server (tests/test_conventions_serve.py).
"""
from __future__ import annotations

import ast
import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# (module, attribute path) of every Streamlit internal this launcher uses; all must be there, else a plain start
STREAMLIT_INTERNALS = (
    ("streamlit.runtime.pages_manager", "PagesManager.uses_pages_directory"),
    ("streamlit.string_util", "is_emoji"),
    ("streamlit.dataframe_util", "convert_pandas_df_to_arrow_bytes"),
    ("streamlit.web.cli", "main"),
)


def moved_internals() -> list[str]:
    """The Streamlit internals of ``STREAMLIT_INTERNALS`` that this Streamlit lacks (``module.attr``), in order."""
    moved = []
    for module, attrs in STREAMLIT_INTERNALS:
        try:
            obj = importlib.import_module(module)
            for attr in attrs.split("."):
                obj = getattr(obj, attr)
        except (ImportError, AttributeError):
            moved.append(f"{module}.{attrs}")
    return moved


def plain_start(argv: list[str]) -> int:
    """``streamlit run app.py ARGV`` as Streamlit's own command line starts it (this process becomes it)."""
    args = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), *argv]
    os.execv(sys.executable, args)
    return 0  # not reached


def page_imports(root: Path = ROOT) -> list[str]:
    """The modules ``app.py`` and ``pages/*.py`` import — at the top and inside functions (the Train page's layer
    scores, the Data page's importers) — in file order, without repeats. None of them imports torch: a page that
    runs a model goes through a job (tests/test_first_visit.py)."""
    names: list[str] = []
    for path in [root / "app.py", *sorted((root / "pages").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module)
                names += [f"{node.module}.{a.name}" for a in node.names]  # submodules named in the list
    return list(dict.fromkeys(n for n in names if n.split(".")[0] != "__future__"))


def warm(root: Path = ROOT) -> list[str]:
    """Import what the pages import (a name that is an attribute, not a module, is skipped) and migrate the
    database; returns the modules imported."""
    done = []
    for name in page_imports(root):
        try:
            importlib.import_module(name)
            done.append(name)
        except ImportError:
            continue  # ``from x import some_function``: not a module
    from storage import Database
    from storage.db import default_db_path

    Database(default_db_path())  # creates / migrates the schema now, not on the first page view
    warm_first_use()
    return done


def warm_first_use() -> None:
    """Do once, before anyone visits, the work that libraries do on their first use rather than at import.

    Measured on the first page run of a fresh server (cProfile around ``app.py``, 2-core machine): Streamlit
    compiles its emoji table (0.3 s) the first time a page icon is checked; plotly loads the validators of every
    trace and layout property on the first figure of each kind (0.2-0.6 s for a first ``px.imshow``);
    pandas-to-Arrow conversion of the first table; pandas' Styler (Explore's coloured agreement table) imports
    and compiles its jinja templates on first use (0.09 s). Each is paid here with tiny inputs instead."""
    import pandas as pd
    import plotly.express as px
    import plotly.graph_objects as go
    import plotly.io as pio
    from streamlit import dataframe_util, string_util

    from pages.common import heat_table

    string_util.is_emoji("🎞️")  # app.py's page icon
    frame = pd.DataFrame({"x": [0, 1], "y": [0.5, 1.0], "g": ["a", "b"]})
    dataframe_util.convert_pandas_df_to_arrow_bytes(frame)
    heat_table(frame[["x", "y"]]).to_html()
    figures = [px.line(frame, x="x", y="y", color="g", markers=True), px.bar(frame, x="g", y="y"),
               px.histogram(frame, x="y"), px.imshow([[0.0, 1.0], [1.0, 0.0]], text_auto=".2f"),
               go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines+markers"), go.Bar(x=["a"], y=[1])])]
    for fig in figures:   # what the pages' charts do: layout, axes, colour bar, then the JSON st.plotly_chart sends
        fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), legend_title_text="", title="t")
        fig.update_xaxes(title=None)
        fig.update_yaxes(tickformat=".3f")
        pio.to_json(fig, validate=False)


def main(argv: list[str]) -> int:
    import gc

    sys.path.insert(0, str(ROOT))
    moved = moved_internals()
    if moved:
        import streamlit

        print(f"warning: Streamlit {getattr(streamlit, '__version__', '?')} has moved {', '.join(moved)}: "
              "starting a plain 'streamlit run app.py' (not warmed, the first visit is slower)",
              file=sys.stderr, flush=True)
        return plain_start(argv)
    warm()
    gc.collect()  # what warming left as garbage goes now; the rest is long-lived (modules, classes, tables)
    gc.freeze()
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli as streamlit_cli

    PagesManager.uses_pages_directory = False  # app.py's st.navigation from the first run (see above)

    sys.argv = ["streamlit", "run", str(ROOT / "app.py"), *argv]
    return streamlit_cli.main()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
