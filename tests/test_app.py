"""Dashboard logic through Streamlit's AppTest (no browser)."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from conftest import write_generic
from dff_core.data.load import import_generic

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def test_home_shows_empty_state(tmp_path, monkeypatch):
    monkeypatch.setenv("DFF_DB", str(tmp_path / "empty.duckdb"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "No datasets yet" in at.info[0].value


def test_home_lists_datasets_with_stats(tmp_path, monkeypatch):
    from storage import Database
    db = Database(tmp_path / "home.duckdb")
    import_generic(db, "small", *write_generic(tmp_path / "d", n_users=12, n_items=20, seq=6))
    monkeypatch.setenv("DFF_DB", str(db.path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    frame = at.dataframe[0].value
    assert frame["name"].tolist() == ["small"]
    assert frame["users"].tolist() == [12] and frame["interactions"].tolist() == [72]
