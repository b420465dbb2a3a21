"""DFF Studio dashboard entry point: ``streamlit run app.py`` (or ``python3 dev.py app``).

Explicit ``st.navigation``: the pages list lives here, so helper modules in ``pages/`` are not pages.
Streamlit's pages-directory mode (which a ``pages/`` folder switches on until ``st.navigation`` first runs)
is left on the first run (``leave_pages_directory_mode``), and its file-listing sidebar is off
(``client.showSidebarNavigation = false`` in ``.streamlit/config.toml``), so no visitor — not even the
first one on a fresh server — sees helper modules as pages; the sidebar below lists the pages instead.
Pages stay thin: they read storage and enqueue jobs through ``dff_core``, ``storage`` and ``jobs``.
A background job worker for the database is started on the first page view (``DFF_WORKER=0``: don't); it
stops when this server does.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages.common import database, leave_pages_directory_mode, show_error, start_worker
from storage import DatabaseDamaged

leave_pages_directory_mode()
st.set_page_config(page_title="DFF Studio", page_icon="🎞️", layout="wide")

# (file, title, icon); a page appears once its file exists. Material icons render without emoji fonts.
PAGES = [
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/data.py", "Data", ":material/database:"),
    ("pages/extract.py", "Extract", ":material/layers:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/jobs.py", "Jobs", ":material/pending_actions:"),
    ("pages/compare.py", "Compare", ":material/leaderboard:"),
    ("pages/explore.py", "Explore", ":material/travel_explore:"),
    ("pages/study.py", "Study", ":material/science:"),
]
ROOT = Path(__file__).resolve().parent

pages = [st.Page(f, title=t, icon=i, default=(f == "pages/home.py")) for f, t, i in PAGES if (ROOT / f).exists()]
page = st.navigation(pages, position="hidden")
with st.sidebar:  # the config hides Streamlit's own page list (see above), so the app draws it
    for p in pages:
        st.page_link(p)
try:
    start_worker()
    with database().held_open():  # one open of the database file for the page's storage reads (storage.db)
        page.run()
except DatabaseDamaged as exc:  # on every page: one red line naming the file and what to do, no raw exception
    show_error(exc)
