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
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
for _p in (ROOT / "tests", Path(__file__).resolve().parent):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

SERVER_START_TIMEOUT_S = 90.0

from browser_helpers import RUN_TIMEOUT_MS, chromium_path  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _server_env(db_path: Path) -> dict:
    return dict(os.environ, DFF_DB=str(db_path), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1",
                TRANSFORMERS_OFFLINE="1", DFF_WORKERS="1", DFF_WORKER="1")


@pytest.fixture(scope="session")
def app_db(tmp_path_factory):
    """A fresh database with the demo dataset imported (built once per test session, ~20 s)."""
    from dff_core.data.load import ensure_demo
    from storage import Database

    db = Database(tmp_path_factory.mktemp("browser") / "dff.duckdb")
    ensure_demo(db)
    return db


@pytest.fixture(scope="session")
def app_server(app_db):
    """``streamlit run app.py`` on the demo database; yields ``http://127.0.0.1:PORT``."""
    port = _free_port()
    log_path = app_db.path.with_name("streamlit.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--server.runOnSave", "false"],
        cwd=str(ROOT), env=_server_env(app_db.path), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not answer within {SERVER_START_TIMEOUT_S:.0f} s:\n"
                                   f"{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        _kill_group(proc.pid)
        proc.wait(timeout=10)
        log.close()
        pid_file = app_db.path.with_name(app_db.path.name + ".worker.pid")
        if pid_file.exists():
            try:
                _kill_group(int(pid_file.read_text().strip()))
            except ValueError:
                pass


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
