"""Helpers for the browser tests (import them: ``from browser_helpers import open_page, shot``)."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

RUN_TIMEOUT_MS = 60_000


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
    """Wait until the page has rendered and Streamlit's "running" indicator has gone (twice in a row)."""
    page.wait_for_selector('[data-testid="stAppViewContainer"]', timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout_ms)
    deadline = time.monotonic() + timeout_ms / 1000
    calm = 0
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').filter(has_text="Running").count()
        skeleton = page.locator('[data-testid="stSkeleton"]').count()
        calm = calm + 1 if not running and not skeleton else 0
        if calm >= 2:
            return
        page.wait_for_timeout(150)
    raise TimeoutError("the Streamlit run did not finish in time")


def open_page(page, base_url: str, slug: str = "") -> float:
    """Go to a dashboard page (``""`` = Home, else e.g. ``"train"``); returns seconds until it was ready."""
    t0 = time.perf_counter()
    page.goto(f"{base_url}/{slug}", wait_until="domcontentloaded")
    wait_for_app(page)
    return time.perf_counter() - t0


def shot(page, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
