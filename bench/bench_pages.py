"""Dashboard page load times in a real browser (Chromium via Playwright), on the demo data.

    python bench/bench_pages.py [--db FILE] [--repeats 3] [--fresh]

Without ``--db`` a temporary database with the demo dataset, a synthetic 6-layer feature set and four
one-epoch runs is built first (about a minute on an idle 2-core machine). For every page it prints the time
from navigation until the browser painted the end of Streamlit's script run (title rendered, run state back to
not running; the page records that moment itself, ``browser_helpers.open_page``, so the 0.15-0.3 s the harness
spends confirming it by polling is not counted, for the bare page alike): the first
visit of each page (cold: imports, first queries) and the median of the repeats (warm). ``--fresh [N]`` also
opens every page FIRST on its own fresh server and fresh browser context (the worst first visit: nothing
cached in the server or the browser yet), N times, and prints the median; the bare page is measured the same
way; ``(polled)`` is the same visits timed until the harness had confirmed the end by polling, the measure this
benchmark printed before 2026-12-04. The first row, ``(bare)``, is the baseline measured the same way in the same run:
``bench/bare_streamlit_app.py``, a Streamlit page with a title and nothing else — what Streamlit and the browser
cost on this machine before any page of ours does anything. Numbers only; on a shared machine they are
indicative (the load average is printed with them).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "browser")]

PAGES = ["", "data", "extract", "train", "jobs", "compare", "explore", "study"]
BARE = str(ROOT / "bench" / "bare_streamlit_app.py")
BARE_ROW = "(bare)"


def _prepare(folder: Path) -> Path:
    from browser_helpers import add_topic_features
    from jobs.datasets import ensure_demo
    from jobs.workflows import run_training
    from storage import Database

    db = Database(folder / "bench.duckdb")
    ensure_demo(db)
    fs = add_topic_features(db)
    settings = {"epochs": 1}
    for seed in (1, 2):
        run_training(db, "demo", "id", settings=settings, seed=seed, study="bench")
        run_training(db, "demo", "dff", features=fs.name, settings=settings, seed=seed, study="bench")
    return db.path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=None, help="an existing database (default: build a demo one)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fresh", type=int, nargs="?", const=1, default=0, metavar="N",
                    help="also open each page (and the bare page) first on its own fresh server, N times each; "
                         "the median is printed (one sample moves by a few tenths of a second)")
    args = ap.parse_args()
    import os
    from playwright.sync_api import sync_playwright

    from browser_helpers import chromium_path, open_page, open_page_times, running_app

    exe = chromium_path()
    if exe is None:
        print("no Chromium found: apt-get install -y chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        db_path = Path(args.db) if args.db else _prepare(Path(tmp))
        print(f"database: {db_path} (prepared in {time.perf_counter() - t0:.1f} s)")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-dev-shm-usage"])
            cold, warm, fresh = {}, {}, {}
            with running_app(db_path, worker=False, script=BARE) as base:   # the baseline, fresh server
                page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
                cold[BARE_ROW] = fresh[BARE_ROW] = open_page(page, base)
                warm[BARE_ROW] = [open_page(page, base) for _ in range(args.repeats)]
                page.context.close()
            with running_app(db_path, worker=False) as base:
                page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
                cold.update({slug: open_page(page, base, slug) for slug in PAGES})
                warm.update({slug: [] for slug in PAGES})
                for _ in range(args.repeats):
                    for slug in PAGES:
                        warm[slug].append(open_page(page, base, slug))
            browser.close()
        if args.fresh:
            samples: dict[str, list[float]] = {slug: [] for slug in [BARE_ROW] + PAGES}
            polled: dict[str, list[float]] = {slug: [] for slug in [BARE_ROW] + PAGES}
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-dev-shm-usage"])
                for _ in range(args.fresh):  # rounds over all pages, so a slow spell spreads over every page
                    for slug in [BARE_ROW] + PAGES:
                        script = BARE if slug == BARE_ROW else "app.py"
                        with running_app(db_path, worker=False, script=script) as base:
                            page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
                            painted, confirmed = open_page_times(page, base, "" if slug == BARE_ROW else slug)
                            samples[slug].append(painted)
                            polled[slug].append(confirmed)
                            page.context.close()
                browser.close()
            fresh = {slug: statistics.median(v) for slug, v in samples.items()}
            fresh_polled = {slug: statistics.median(v) for slug, v in polled.items()}
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'page':10} {'first visit s':>14} {'warm median s':>14} {'warm min s':>11}"
          + (f" {'fresh server s':>15} {'(polled)':>9}" + (f"  median of {args.fresh}" if args.fresh > 1 else "")
             if args.fresh else ""))
    for slug in [BARE_ROW] + PAGES:
        print(f"{slug if slug == BARE_ROW else '/' + slug:10} {cold[slug]:14.2f} {statistics.median(warm[slug]):14.2f} {min(warm[slug]):11.2f}"
              + (f" {fresh[slug]:15.2f} {fresh_polled[slug]:9.2f}" if args.fresh else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
