"""The dashboard in a real browser on the demo data.

A user launches a training job from the Train page, watches it reach done on the Jobs page (the page
refreshes itself) and finds the run on the Compare page; then every page is opened once more, checked for
errors and photographed (``tmp/artifacts/browser/*.png``).
"""
from __future__ import annotations

import re
import time

import pytest

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

from browser_helpers import add_topic_features, open_page, shot, wait_for_app  # noqa: E402

PAGES = ["", "data", "extract", "train", "jobs", "compare", "explore", "study"]
TRAIN_TIMEOUT_S = 150


def _no_exception(page) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def test_train_watch_and_compare(app_server, app_db, page, artifacts):
    from storage.queue import get_job

    fs = add_topic_features(app_db)
    open_page(page, app_server, "train")
    main = page.locator('[data-testid="stMain"]')
    # the layer picker shows one usefulness bar per stored layer
    page.wait_for_selector('[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg')
    assert page.locator(".js-plotly-plot").count() == 0  # Vega-Lite: no plotly.js on a first visit to Train
    shot(page, artifacts, "flow-1-train")
    # a tiny run: the dff strategy (default with a feature set), 2 epochs of 2 large batches
    main.get_by_text("Hyper-parameters").click()
    for label, value in (("Epochs", "2"), ("Batch size", "1024")):
        box = main.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
        wait_for_app(page)
    expect(main.get_by_text(re.compile(r"^2 epochs, batch 1024"))).to_have_count(1)
    main.get_by_role("button", name="Launch training").click()
    queued = main.get_by_text(re.compile(r"Queued training job #\d+"))
    queued.wait_for()
    job_id = int(re.search(r"#(\d+)", queued.inner_text()).group(1))
    assert get_job(app_db, job_id).params["features"] == fs.name
    shot(page, artifacts, "flow-2-launched")

    # the Jobs page follows the job without a reload
    open_page(page, app_server, "jobs")
    header = main.get_by_text(f"Job #{job_id} · train · done")
    t0 = time.monotonic()
    header.wait_for(timeout=TRAIN_TIMEOUT_S * 1000)
    print(f"job {job_id} reached done on the Jobs page {time.monotonic() - t0:.1f} s after opening it")
    wait_for_app(page)
    expect(main.get_by_text(re.compile(r"^100% ·"))).to_have_count(1)
    expect(page.locator('[data-testid="stVegaLiteChart"]')).to_have_count(2)  # loss and validation curves
    assert page.locator(".js-plotly-plot").count() == 0  # Vega-Lite: no plotly.js on the self-refreshing page
    _no_exception(page)
    shot(page, artifacts, "flow-3-jobs-done")

    run_id = get_job(app_db, job_id).result["run_id"]
    open_page(page, app_server, "compare")
    expect(main.get_by_text(re.compile(rf"finished runs? match(es)?: .*#{run_id}\b"))).to_have_count(1)
    expect(page.locator(".js-plotly-plot")).to_have_count(3)  # strategies, cold vs warm, DFF layer weights
    _no_exception(page)
    shot(page, artifacts, "flow-4-compare")


@pytest.mark.parametrize("slug", PAGES)
def test_every_page_renders(app_server, page, artifacts, slug):
    seconds = open_page(page, app_server, slug)
    print(f"page /{slug}: ready in {seconds:.2f} s")
    _no_exception(page)
    assert page.locator('[data-testid="stMain"] h1').count() >= 1
    shot(page, artifacts, f"page-{slug or 'home'}")
