"""Helpers for the browser tests (import them: ``from browser_helpers import open_page, shot``)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import weakref
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_MS = 60_000
SERVER_START_TIMEOUT_S = 90.0


def chromium_path() -> str | None:
    """Debian's Chromium (or ``DFF_CHROMIUM``); None when there is none."""
    explicit = os.environ.get("DFF_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")



def wait_for_app(page, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Wait until the page has a title and Streamlit's script run has finished (``stApp`` reports
    ``data-test-script-state="notRunning"`` twice in a row, 150 ms apart; a self-refreshing fragment runs
    again later, which is fine)."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout_ms)
    app = page.locator('[data-testid="stApp"]')
    deadline = time.monotonic() + timeout_ms / 1000
    calm = 0
    while time.monotonic() < deadline:
        calm = calm + 1 if app.get_attribute("data-test-script-state") == "notRunning" else 0
        if calm >= 2:
            return
        page.wait_for_timeout(150)
    raise TimeoutError(f"the Streamlit run did not finish within {timeout_ms / 1000:.0f} s")


# Installed in every document a page opens: notes the wall-clock time (ms since the epoch) of the first frame
# painted after each end of a Streamlit run (``data-test-script-state`` turning ``notRunning``).
_RUN_END_PROBE = """
if (!window.__dffRunEnds) {
  window.__dffRunEnds = [];
  new MutationObserver(records => {
    if (records.some(r => r.target.getAttribute('data-test-script-state') === 'notRunning'))
      requestAnimationFrame(() => window.__dffRunEnds.push(performance.timeOrigin + performance.now()));
  }).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-test-script-state']});
}
"""
_probed: weakref.WeakSet = weakref.WeakSet()   # pages that have the probe


def open_page(page, base_url: str, slug: str = "") -> float:
    """Go to a dashboard page (``""`` = Home, else e.g. ``"train"``); returns seconds from the navigation until
    the page was ready: its script run had ended and the browser had painted the result.

    ``wait_for_app`` confirms the end by polling (two calm checks 150 ms apart), which would add 0.15-0.3 s that
    no visitor waits for; the time returned is when the run's last end was painted, as the page recorded it
    (``_RUN_END_PROBE``), or the polling time where the page recorded none."""
    return open_page_times(page, base_url, slug)[0]


def open_page_times(page, base_url: str, slug: str = "") -> tuple[float, float]:
    """``open_page``, returning ``(painted, polled)``: the ready time, and when ``wait_for_app`` confirmed it (the
    measure ``bench_pages.py`` printed before 2026-12-04, kept for comparison)."""
    if page not in _probed:   # once per page: init scripts accumulate
        page.add_init_script(_RUN_END_PROBE)
        _probed.add(page)
    t0 = time.time()
    page.goto(f"{base_url}/{slug}", wait_until="domcontentloaded")
    wait_for_app(page)
    polled = time.time() - t0
    ends = page.evaluate("() => window.__dffRunEnds || []")
    return (min(polled, ends[-1] / 1000 - t0) if ends else polled), polled


def shot(page, artifacts: Path, name: str, max_height: int = 6000) -> Path:
    """Screenshot of the whole page: Streamlit scrolls inside its main container, so the viewport is
    stretched to the content's height for the picture and restored afterwards."""
    path = artifacts / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
        " return m ? m.scrollHeight : document.body.scrollHeight; }")
    if size and height and height > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, max_height)})
        page.wait_for_timeout(300)  # let charts re-lay out
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        if size:
            page.set_viewport_size(size)
    return path


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


@contextmanager
def running_app(db_path: Path, worker: bool = True, script: str = "app.py", serve: bool = True):
    """The dashboard as ``python3 dev.py app`` starts it (``serve.py``: ``streamlit run app.py`` after its
    imports), or ``streamlit run script`` (``serve=False``, or another script), on ``db_path`` at 127.0.0.1 on a
    free port; yields the base URL.

    The server runs in its own process group; on exit that group and the job worker the app started
    (its pid file sits next to the database) are terminated."""
    db_path = Path(db_path)
    port = _free_port()
    log_path = db_path.with_name(f"streamlit-{port}.log")
    log = open(log_path, "wb")
    env = dict(_server_env(db_path), DFF_WORKER="1" if worker else "0")
    # serve.py: as python3 dev.py app starts it
    launch = ["serve.py"] if script == "app.py" and serve else ["-m", "streamlit", "run", script]
    proc = subprocess.Popen(
        [sys.executable, *launch, "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--server.runOnSave", "false"],
        cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
        pid_file = db_path.with_name(db_path.name + ".worker.pid")
        if pid_file.exists():
            try:
                _kill_group(int(pid_file.read_text().strip()))
            except ValueError:
                pass


def add_topic_features(db, name: str = "demo-topics", layers: int = 6, dim: int = 32, seed: int = 0):
    """A synthetic feature set for the demo dataset whose middle layers know each clip's topic.

    Lets browser tests use feature strategies and the layer picker without running a backbone.
    Returns the stored ``FeatureSetRecord`` (the existing one when ``name`` is already stored)."""
    import json
    import tempfile

    import numpy as np

    from jobs.workflows import import_features_npz
    from storage.datasets import get_dataset, load_items
    from storage.features import get_feature_set, list_feature_sets

    ds = get_dataset(db, "demo")
    for fs in list_feature_sets(db, ds.id):
        if fs.name == name:
            return fs
    items = load_items(db, ds.id)
    topics = [json.loads(m or "{}").get("topic", "") for m in items["meta"]]
    names = sorted(set(topics))
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(names), dim))
    t = np.array([names.index(x) for x in topics])
    strength = np.sin(np.linspace(0, np.pi, layers)) * 2.0  # 0 at the ends, strongest in the middle
    feats = np.stack([centres[t] * s + rng.normal(size=(len(t), dim)) for s in strength], axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.npz"
        np.savez(path, item_ids=np.asarray(items["item_id"].tolist(), dtype=str), features=feats.astype(np.float32))
        import_features_npz(db, name, ds.id, path, backbone="synthetic-topics")
    return get_feature_set(db, name, dataset=ds.id)
