"""A shared dashboard reads server paths only under allowed roots (``jobs.paths``): the database's folder and the
project's data folder by default, ``DFF_ALLOWED_ROOTS`` otherwise; ``..`` and symlinks cannot lead out."""
from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from data_helpers import ROOT, write_generic
from jobs.paths import allowed_roots, confine
from storage import Database
from storage.datasets import list_datasets


def test_paths_outside_the_roots_are_refused_even_through_dotdot_or_a_symlink(tmp_path, monkeypatch):
    monkeypatch.delenv("DFF_ALLOWED_ROOTS", raising=False)
    db = Database(tmp_path / "db" / "x.duckdb")
    roots = allowed_roots(db)
    assert roots[0] == (tmp_path / "db").resolve() and roots[1].name == "data"
    inside = tmp_path / "db" / "in.csv"
    assert confine(str(inside), roots, "items file") == str(inside)
    for bad in ("/etc/passwd", str(tmp_path / "db" / ".." / "secret.csv")):
        with pytest.raises(ValueError, match="is outside the folders this shared dashboard reads from"):
            confine(bad, roots, "items file")
    (tmp_path / "db" / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="outside"):
        confine(str(tmp_path / "db" / "link" / "secret.csv"), roots, "items file")
    monkeypatch.setenv("DFF_ALLOWED_ROOTS", str(tmp_path))
    assert allowed_roots(db) == [tmp_path.resolve()]


@pytest.fixture
def shared_server():
    """The server option a shared dashboard runs with (AppTest runs in this process, so it reads it)."""
    st.config.set_option("server.address", "0.0.0.0")
    yield
    st.config.set_option("server.address", None)


def _import(at: AppTest, name: str, inter: Path, items: Path) -> AppTest:
    at.text_input(key="gen_name").input(name)
    at.text_input(key="gen_inter").input(str(inter))
    at.text_input(key="gen_items").input(str(items))
    next(b for b in at.button if b.label == "Import" and "import_paths" in str(b.form_id)).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_data_page_refuses_a_path_outside_the_roots_when_shared(tmp_path, monkeypatch, shared_server):
    monkeypatch.setenv("DFF_WORKER", "0")
    monkeypatch.delenv("DFF_ALLOWED_ROOTS", raising=False)
    db = Database(tmp_path / "db" / "shared.duckdb")
    monkeypatch.setenv("DFF_DB", str(db.path))
    outside = write_generic(tmp_path / "elsewhere")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    at.switch_page("pages/data.py").run()
    at = _import(at, "outside", *outside)
    errors = [e.value.replace("\\", "") for e in at.error]
    assert len(errors) == 1 and errors[0].startswith(
        f"Import failed, nothing was stored: interactions file '{outside[0]}' is outside the folders")
    assert list_datasets(db) == []
    at = _import(at, "inside", *write_generic(tmp_path / "db" / "files"))
    assert [d.name for d in list_datasets(db)] == ["inside"]
