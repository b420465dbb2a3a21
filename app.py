"""DFF Studio dashboard entry point: ``streamlit run app.py`` (or ``python3 dev.py app``).

Explicit ``st.navigation``: the pages list lives here, so helper modules in ``pages/`` are not pages.
Pages stay thin: they read storage and enqueue jobs through ``dff_core``, ``storage`` and ``jobs``.
A background job worker for the database is started on the first page view (``DFF_WORKER=0``: don't).
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages.common import start_worker, warm_up_registry

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

start_worker()
warm_up_registry()
st.navigation([st.Page(f, title=t, icon=i, default=(f == "pages/home.py"))
               for f, t, i in PAGES if (ROOT / f).exists()]).run()
