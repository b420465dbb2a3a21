"""The dashboard in a real browser on the demo data: every page renders without an error."""
from __future__ import annotations

import pytest

from browser_helpers import open_page, shot

PAGES = ["", "data", "extract", "train", "jobs", "compare"]


@pytest.mark.parametrize("slug", PAGES)
def test_page_renders_without_error(app_server, page, artifacts, slug):
    open_page(page, app_server, slug)
    shot(page, artifacts, f"page-{slug or 'home'}")
    assert page.locator('[data-testid="stException"]').count() == 0
