"""Hardening in a real browser: hostile titles and names render as text on every page (no request to the
URL they name, no script), an unreadable cover shows a placeholder and why, and every page opened FIRST on a
fresh server shows no error and no helper modules in the sidebar. Screenshots: ``hardening-*.png``."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

from browser_helpers import add_topic_features, open_page, running_app, shot  # noqa: E402

PAGES = {"": "DFF Studio", "data": "Data", "extract": "Extract features", "train": "Train", "jobs": "Jobs",
         "compare": "Compare", "explore": "Explore", "study": "Study"}
NAV = ["Home", "Data", "Extract", "Train", "Jobs", "Compare", "Explore", "Study"]
TRAP = "127.0.0.1:9"          # nothing listens there; any request to it means user text became Markdown/HTML
HOSTILE = [f"![t](http://{TRAP}/x.png)", "<img src=x onerror=\"window.__pwned=1\">", "**bold** _it_ # h"]
HOSTILE_NAME = f"![d](http://{TRAP}/d.png) **ds**"


def _copy_db(app_db, tmp_path):
    """A copy of the session's demo database: this test rewrites titles and names."""
    from storage import Database

    path = tmp_path / "hostile.duckdb"
    shutil.copy(app_db.path, path)
    return Database(path)


def _no_exception(page) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def test_hostile_text_renders_as_text_and_bad_cover_shows_why(browser, app_db, artifacts, tmp_path):
    import sqlalchemy as sa

    from jobs import neighbours as nb
    from storage import queue
    from storage.datasets import get_dataset

    db = _copy_db(app_db, tmp_path)
    add_topic_features(db)
    ds = get_dataset(db, "demo")
    catalog = nb.load_catalog(db, "demo")
    top = int(catalog.items["popularity"].idxmax())            # the video Explore shows first
    corrupt = f"covers/corrupt-{top}.jpg"
    (Path(ds.root) / corrupt).write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")  # a JPEG header, then garbage
    with db.session() as conn:
        for i, title in enumerate(HOSTILE):                      # every item gets one of the hostile titles
            conn.execute(sa.text("UPDATE items SET title = :t || ' ' || CAST(idx AS VARCHAR) "
                                 "WHERE dataset_id = :d AND idx % 3 = :i"), {"t": title, "d": ds.id, "i": i})
        conn.execute(sa.text("UPDATE items SET cover_path = :c WHERE dataset_id = :d AND idx = :i"),
                     {"c": corrupt, "d": ds.id, "i": top})
        conn.execute(sa.text("UPDATE datasets SET name = :n WHERE id = :d"), {"n": HOSTILE_NAME, "d": ds.id})
    job = queue.enqueue(db, "train", {"dataset": HOSTILE_NAME, "strategy": "id"}, group=HOSTILE[0])
    queue.claim_next(db, 1)
    queue.finish(db, job, "failed", error=f"dataset {HOSTILE[1]} {HOSTILE[0]}")

    requests: list[str] = []
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    try:
        with running_app(db.path, worker=False) as base:
            for slug in PAGES:
                open_page(page, base, slug)
                _no_exception(page)
                assert page.evaluate("() => window.__pwned") is None, f"a title ran script on /{slug}"
                if slug in ("data", "jobs", "explore"):
                    shot(page, artifacts, f"hardening-hostile-{slug or 'home'}")
                if slug == "explore":
                    main = page.locator('[data-testid="stMain"]')
                    shown = catalog.items.at[top, "title"]
                    title = f"{HOSTILE[top % 3]} {top}"
                    assert shown != title  # the catalog above was loaded before the rewrite
                    expect(main.get_by_text(title, exact=True).first).to_be_visible()
                    # neighbour titles, shown as typed (an invisible word joiner keeps "http://" from linking)
                    shown_text = main.inner_text().replace("\u2060", "")
                    assert f"{HOSTILE[0]} " in shown_text and "**bold** _it_ # h" in shown_text
                    # titles are bold in neighbour lists, but "**bold**" inside them stays literal
                    assert main.locator("strong", has_text=re.compile(r"^bold$")).count() == 0
                    assert main.locator("em", has_text=re.compile(r"^it$")).count() == 0
                    assert main.locator('img[src="x"]').count() == 0
                    expect(main.get_by_text("cover unreadable: the image cannot be decoded").first).to_be_visible()
                    assert main.locator("a", has_text=TRAP).count() == 0       # not even a link
                if slug == "data":
                    main = page.locator('[data-testid="stMain"]')
                    expect(main.get_by_role("combobox", name="Look at")).to_have_value(HOSTILE_NAME)
                    main.get_by_text("Delete this dataset").click()
                    shown = main.inner_text().replace("\u2060", "")   # the word joiner that keeps URLs unlinked
                    assert f"Removes “{HOSTILE_NAME}” and everything" in shown
                    assert f"Yes, delete “{HOSTILE_NAME}”" in shown
                    assert main.locator("a", has_text=TRAP).count() == 0
                    shot(page, artifacts, "hardening-hostile-data-delete")
                if slug == "jobs":
                    alert = page.locator('[data-testid="stMain"] [data-testid="stAlert"]').first
                    alert.wait_for()
                    assert f"dataset {HOSTILE[1]} {HOSTILE[0]}" in alert.inner_text().replace("\u2060", "")
    finally:
        context.close()
    assert not [u for u in requests if TRAP in u], [u for u in requests if TRAP in u]


# every page on serve.py (python3 dev.py app), and two on a bare ``streamlit run app.py``, whose first run starts in
# Streamlit's pages-directory mode (serve.py switches that mode off before the server starts)
FIRST_VISITS = [(slug, True) for slug in PAGES] + [("train", False), ("", False)]


def test_every_page_opened_first_on_a_fresh_server(browser, app_db, artifacts, tmp_path):
    db_path = tmp_path / "first.duckdb"
    shutil.copy(app_db.path, db_path)
    for slug, serve in FIRST_VISITS:
        title = PAGES[slug]
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        page = context.new_page()
        try:
            with running_app(db_path, serve=serve) as base:   # a fresh server; its worker starts too
                seconds = open_page(page, base, slug)
                print(f"/{slug}: first request on a fresh server ({'serve.py' if serve else 'streamlit run'}) "
                      f"ready in {seconds:.2f} s")
                _no_exception(page)
                main = page.locator('[data-testid="stMain"]')
                expect(main.locator("h1").first).to_have_text(title)
                body = page.locator("body").inner_text()
                assert "ImportError" not in body and "cannot import name" not in body
                sidebar = page.locator('[data-testid="stSidebar"]')
                expect(sidebar.locator("a")).to_have_count(len(NAV))  # the nav may paint after the title
                links = [t.strip().splitlines()[-1] for t in sidebar.locator("a").all_inner_texts()]  # after the icon
                assert links == NAV, links                      # the app's pages, no helper modules
                assert page.locator('[data-testid="stSidebarNav"]').count() == 0  # no pages-directory list
                shot(page, artifacts, f"hardening-first-visit-{slug or 'home'}{'' if serve else '-streamlit-run'}")
        finally:
            context.close()
