"""Real-browser fixtures: the dashboard on the demo data, driven by Playwright through Debian's Chromium.

Reusable by every browser test file in this folder:

* ``app_server`` (session): a temporary database (``DFF_DB``) with the demo dataset, ``streamlit run app.py``
  on a free port at 127.0.0.1 (its background job worker starts on the first page view); yields the base URL
  (no trailing slash) and tears down the server's and the worker's process groups.
* ``app_db`` (session): the ``storage.Database`` of that server, to arrange or check data directly.
* ``browser`` (session) and ``page`` (per test): Chromium at ``/usr/bin/chromium`` (``DFF_CHROMIUM``
  overrides); Playwright's own browser download is never used.
* ``artifacts``: the folder for screenshots (``tmp/artifacts/browser``; ``DFF_ARTIFACTS`` overrides).
* helpers in ``browser_helpers``: ``open_page(page, base_url, slug)`` (``""`` = Home, else the page
  file's stem, e.g. ``"train"``),
  ``wait_for_app(page)`` (until Streamlit has finished the current run) and ``shot(page, artifacts, name)``.

The tests skip with the reason when Playwright or Chromium is missing (``python3 dev.py test`` installs
Chromium itself when it can).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
for _p in (ROOT / "tests", Path(__file__).resolve().parent):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from browser_helpers import RUN_TIMEOUT_MS, chromium_path, running_app  # noqa: E402


@pytest.fixture(scope="session")
def app_db(tmp_path_factory):
    """A fresh database with the demo dataset imported (built once per test session, ~20 s)."""
    from jobs.datasets import ensure_demo
    from storage import Database

    db = Database(tmp_path_factory.mktemp("browser") / "dff.duckdb")
    ensure_demo(db)
    return db


@pytest.fixture(scope="session")
def app_server(browser, app_db):
    """``streamlit run app.py`` on the demo database; yields ``http://127.0.0.1:PORT``.

    Asks for ``browser`` first, so a machine without Chromium skips before building anything."""
    with running_app(app_db.path) as base:
        yield base


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -r requirements.txt (python3 dev.py test does it)")
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium: apt-get install -y chromium (python3 dev.py test installs it when run as root)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    p = context.new_page()
    p.set_default_timeout(RUN_TIMEOUT_MS)
    yield p
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = Path(os.environ.get("DFF_ARTIFACTS") or ROOT / "tmp" / "artifacts" / "browser")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
