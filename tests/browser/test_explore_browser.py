"""Explore in a real browser on the demo data: pick a video and a user, see neighbour and recommendation
thumbnails; screenshots in ``tmp/artifacts/browser/explore-*.png``."""
from __future__ import annotations

import re
import time

import pytest

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

from browser_helpers import add_topic_features, open_page, shot, wait_for_app  # noqa: E402


def _no_exception(page) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def _choose(page, label: str, text: str, option: re.Pattern, shown) -> float:
    """Type ``text`` into selectbox ``label``, click the option matching ``option`` and wait until the
    locator ``shown`` is visible; returns the seconds from the click until then."""
    main = page.locator('[data-testid="stMain"]')
    main.get_by_role("combobox", name=label).click()
    page.keyboard.type(text)
    choice = page.get_by_role("option").filter(has_text=option).first
    choice.wait_for()
    t0 = time.perf_counter()
    choice.click()
    shown.wait_for()
    seconds = time.perf_counter() - t0
    wait_for_app(page)
    return seconds


def test_explore_video_and_user(app_server, app_db, page, artifacts):
    from jobs import neighbours as nb
    from jobs.workflows import run_training

    fs = add_topic_features(app_db)
    settings = {"epochs": 2, "hidden": 16, "batch_size": 256}
    runs = [run_training(app_db, "demo", "id", settings=settings, seed=1),
            run_training(app_db, "demo", "dff", features=fs.name, layers="1-4", settings=settings, seed=1)]
    assert [r.status for r in runs] == ["done", "done"]
    catalog = nb.load_catalog(app_db, "demo")

    seconds = open_page(page, app_server, "explore")
    print(f"Explore ready in {seconds:.2f} s")
    _no_exception(page)
    main = page.locator('[data-testid="stMain"]')
    expect(main.get_by_role("heading", name="Nearest videos")).to_have_count(1)

    # a video with a cover, found by a word of its title
    target = catalog.items.loc[[i for i in catalog.items.index
                                if catalog.media(i) and catalog.items.at[i, "popularity"] > 0][10]]
    search = main.get_by_label("Search by title or id")
    search.fill(target["item_id"])
    search.press("Enter")
    wait_for_app(page)
    first_neighbour = nb.neighbours_of(app_db, nb.feature_source(app_db, fs.name, str(fs.num_layers // 2)),
                                       target["item_id"], 1)[0]["item_id"]
    shown = main.locator("code").filter(has_text=re.compile(rf"^{re.escape(first_neighbour)}$")).first
    picked = _choose(page, "Video", target["item_id"], re.compile(rf"· {re.escape(target['item_id'])}$"), shown)
    print(f"pick a video -> neighbours shown: {picked:.2f} s")
    expect(main.get_by_text(target["title"], exact=True).first).to_be_visible()   # plain text, not Markdown
    expect(main.locator('[data-testid="stVideo"], video')).not_to_have_count(0)
    neighbour_lines = main.get_by_text(re.compile(r"· cos -?\d\.\d{3}"))
    expect(neighbour_lines).to_have_count(30)                        # 3 representations x 10
    images = main.locator('[data-testid="stImage"] img')
    assert images.count() >= 31                                      # the cover + one per neighbour
    first = images.nth(1)
    first.scroll_into_view_if_needed()
    assert first.evaluate("img => img.complete && img.naturalWidth > 0")
    _no_exception(page)
    shot(page, artifacts, "explore-1-video")

    # a user: history and the two runs' top-10, side by side
    user = catalog.search_users("")[150]                            # an ordinary history length
    rec = nb.load_run_model(app_db, runs[1].id).recommend(user)
    top = catalog.items.at[rec.items[0], "item_id"]
    _choose(page, "User", user, re.compile(rf"^{re.escape(user)}$"),
            main.locator("code").filter(has_text=re.compile(rf"^{re.escape(top)}$")).first)
    rec_lines = main.get_by_text(re.compile(r"· score -?\d"))
    expect(rec_lines).to_have_count(20)
    expect(main.get_by_text(re.compile(r"test item (hit at|ranked) #\d+"))).to_have_count(2)
    assert images.count() >= 31 + 20 + min(10, len(catalog.user_history(user)))
    main.get_by_text(re.compile(r"^Overlap@10 of neighbour lists")).wait_for()   # the agreement table
    main.locator('[data-testid="stDataFrame"]').last.wait_for()
    assert page.locator(".js-plotly-plot").count() == 0   # no chart library loaded on Explore
    _no_exception(page)
    shot(page, artifacts, "explore-2-user")
