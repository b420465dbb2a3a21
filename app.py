"""DFF Studio dashboard entry point: ``streamlit run app.py`` (or ``python3 dev.py app``).

Explicit ``st.navigation``: the pages list lives here, so helper modules in ``pages/`` are not pages.
Pages stay thin: they read storage and enqueue jobs through ``dff_core``, ``storage`` and ``jobs``.
"""
from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="DFF Studio", page_icon="🎞️", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
]

st.navigation(PAGES).run()
