"""serve.py on a Streamlit whose internals moved: each internal it uses is removed in turn, and the launcher must
print one warning line naming it and start a plain ``streamlit run app.py`` with the same options — no
traceback, no warming that half-works."""
from __future__ import annotations

import gc
import importlib
import sys

import pytest

import serve
from data_helpers import ROOT


@pytest.fixture
def started(monkeypatch, tmp_path):
    """Records how serve.main started Streamlit (plain, or warmed through streamlit.web.cli.main)."""
    import streamlit.web.cli as streamlit_cli

    monkeypatch.setenv("DFF_DB", str(tmp_path / "db.duckdb"))
    seen: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(serve, "plain_start", lambda argv: seen.append(("plain", list(argv))) or 0, raising=False)
    if hasattr(streamlit_cli, "main"):
        monkeypatch.setattr(streamlit_cli, "main", lambda *a, **k: seen.append(("warmed", sys.argv[1:])) or 0)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    yield seen
    gc.unfreeze()  # serve.main freezes the warmed heap: give this test process its collector back


@pytest.mark.parametrize("module, attrs", serve.STREAMLIT_INTERNALS if hasattr(serve, "STREAMLIT_INTERNALS") else [
    ("streamlit.runtime.pages_manager", "PagesManager.uses_pages_directory"),
    ("streamlit.string_util", "is_emoji"),
    ("streamlit.dataframe_util", "convert_pandas_df_to_arrow_bytes")])
def test_a_moved_internal_falls_back_to_a_plain_start_with_one_warning(module, attrs, started, monkeypatch,
                                                                       capsys):
    owner = importlib.import_module(module)
    *path, last = attrs.split(".")
    for attr in path:
        owner = getattr(owner, attr)
    monkeypatch.delattr(owner, last)  # as if an upgrade had moved it

    code = serve.main(["--server.port", "1"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 0
    assert started == [("plain", ["--server.port", "1"])]
    assert len(lines) == 1 and lines[0].startswith("warning: Streamlit ") and f"{module}.{attrs}" in lines[0]
    assert "plain 'streamlit run app.py'" in lines[0]


def test_nothing_moved_starts_warmed_and_silent(started, capsys):
    assert serve.moved_internals() == []
    assert serve.main(["--server.port", "1"]) == 0
    assert started == [("warmed", ["run", str(ROOT / "app.py"), "--server.port", "1"])]
    assert "warning" not in capsys.readouterr().err


def test_plain_start_is_streamlits_own_command_line(monkeypatch):
    calls = []
    monkeypatch.setattr(serve.os, "execv", lambda exe, args: calls.append((exe, args)))
    serve.plain_start(["--server.port", "1"])
    assert calls == [(sys.executable, [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                                       "--server.port", "1"])]
