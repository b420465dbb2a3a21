"""Helpers shared by the dashboard pages: the database handle, the background worker, errors, tables."""
from __future__ import annotations

import math
import os
import re
import threading
from contextlib import contextmanager

import streamlit as st

from storage import Database, default_db_path

PLOT_CONFIG = {"displaylogo": False}
_worker_lock = threading.Lock()


def leave_pages_directory_mode() -> None:
    """Hand the first visit of a fresh server to app.py's ``st.navigation``, whatever URL it asks for.

    Streamlit runs an app whose folder holds ``pages/`` in its legacy pages-directory mode until
    ``st.navigation`` has run once: the very first script run of a fresh server executes the requested page
    file alone (no navigation, no job worker). ``.streamlit/config.toml`` hides that mode's file-listing
    sidebar (``client.showSidebarNavigation = false``), and this call — made by app.py and by ``database()``,
    the first call of every page, never at import time — leaves the mode and reruns the same URL through
    app.py. A no-op once app.py's navigation is in charge (every later run)."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if PagesManager.uses_pages_directory and get_script_run_ctx() is not None and not _under_apptest():
        # (AppTest resets the mode before every run; a rerun there would swallow the run's widget events)
        PagesManager.uses_pages_directory = False
        st.rerun()


def database() -> Database:
    """One handle per database file and process; it holds no connection between calls (see storage.db)."""
    leave_pages_directory_mode()
    return _database(str(default_db_path()))


@st.cache_resource
def _database(path: str) -> Database:
    return Database(path)


LOOPBACK = ("localhost", "127.0.0.1", "::1")


def server_is_shared() -> bool:
    """Whether this server may be reached from other machines: an address beyond loopback, or none set (Streamlit
    then listens on every interface). Tests through AppTest run no server: not shared unless they set one."""
    address = (st.get_option("server.address") or "").strip()
    if address:
        return address not in LOOPBACK
    return not _under_apptest()


def server_path(text: str, what: str) -> str:
    """``text`` (a path typed on a page) checked against the allowed roots when the server is shared
    (``jobs.paths``); as typed otherwise."""
    if not text or not server_is_shared():
        return text
    from jobs.paths import allowed_roots, confine

    return confine(text, allowed_roots(database()), what)


def _under_apptest() -> bool:
    """AppTest replaces the runtime by a mock; tests must not leave worker processes behind."""
    try:
        from streamlit.runtime import Runtime
        return type(Runtime.instance()).__name__ in ("MagicMock", "Mock")
    except Exception:
        return False


def start_worker() -> int | None:
    """Make sure a background job worker serves this database (``DFF_WORKER=0`` turns it off).

    ``ensure_worker`` is idempotent (a pid file keeps one per database) and cheap, so every page run calls it:
    a worker that died is restarted on the next page view. The lock keeps two sessions of this process from
    starting two at once."""
    if os.environ.get("DFF_WORKER", "1") == "0" or _under_apptest():
        return None
    from jobs.worker import ensure_worker

    with _worker_lock:
        try:
            return ensure_worker(database())
        except OSError as exc:
            st.warning(f"could not start the background job worker: {exc}; run `python -m dff_core worker`")
            return None


_AUTOLINK = re.compile(r"(?i)(https?|ftp|mailto|xmpp|www|@)")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~:$&=\"'])")


def plain(value, limit: int | None = None, code: bool = False) -> str:
    """User text (titles, item/user ids, dataset, feature-set, run and study names, error messages that quote
    them) made inert for any Streamlit element that reads Markdown: every Markdown/HTML character is
    backslash-escaped, line breaks become spaces and bare URLs are kept from becoming links, so ``![t](http://host/x.png)``, ``<img onerror=...>``
    or ``**bold**`` show as typed and make no request; ``code=True`` gives an inline code span instead. Every page passes user text through this (or shows it
    with ``st.text`` / a dataframe, which never parse it)."""
    text = "" if value is None else str(value)
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    if code:  # an inline code span (ids): literal by definition, its fence longer than any backtick run inside
        text = " ".join(text.split())
        fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
        pad = " " if text.startswith("`") or text.endswith("`") else ""
        return f"{fence}{pad}{text}{pad}{fence}"
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))
    # GFM turns bare URLs and e-mail addresses into links even when escaped: an invisible word joiner
    # after the scheme / "www" / "@" keeps them plain text (no link to an address a user typed)
    return _AUTOLINK.sub("\\1\u2060", text)


def clip(text, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with an ellipsis when anything was cut
    (a caption under a thumbnail must not end mid-word: "Tropical sunse")."""
    text = " ".join(str(text or "").split())
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space >= limit // 2 else cut).rstrip(" #,.-") + "…"


def user_errors() -> tuple[type[BaseException], ...]:
    from jobs.errors import user_errors as errors
    return errors()


def show_error(exc: BaseException, what: str | None = None) -> None:
    """A user error as one clear line; anything else with its type (never a traceback)."""
    from jobs.errors import user_message
    st.error(plain((f"{what}: " if what else "") + user_message(exc)), icon=":material/block:")


@contextmanager
def reported(what: str | None = None):
    """``with reported("import failed"):`` shows user errors as st.error instead of a traceback."""
    try:
        yield
    except user_errors() as exc:
        show_error(exc, what)
    except Exception as exc:  # a bug, but still no traceback in front of the user
        show_error(exc, what)


def empty_state(message: str, page: str | None = None, label: str | None = None) -> None:
    st.info(message, icon=":material/info:")
    if page:
        try:
            st.page_link(page, label=label or "go there", icon=":material/arrow_forward:")
        except Exception:  # page_link needs the page in st.navigation; pages run alone in some tests
            pass


REFRESH_LEVELS = (2.0, 4.0, 8.0, 16.0, 30.0)  # seconds between a live part's refreshes, quickest first


def refresh_interval(current: float, tick_s: float, levels: tuple[float, ...] = REFRESH_LEVELS) -> float:
    """A self-refreshing part's next interval (one of ``levels``) after a refresh that took ``tick_s`` seconds of
    wall time (its CPU, its waits for the database file, its share of a busy machine).

    Why: the browser asks for a fragment's refresh every ``run_every`` seconds counted from its previous ask, not
    from the end of the previous refresh, and Streamlit queues the ask while a refresh still runs. A refresh that
    takes as long as the interval therefore follows the previous one back to back: the page never rests (a browser
    waiting for its run to end may never see one: the load test's Jobs page, >60 s), and every open tab keeps a
    script thread busy on the machine that is already too busy. So the interval is at least 4 times the refresh
    (the page rests at least 3/4 of the time), stepping up at once; it steps down one level only once a refresh
    takes at most 1/8 of that lower level, so it does not flap between two levels."""
    i = min(range(len(levels)), key=lambda k: abs(levels[k] - current))
    while i < len(levels) - 1 and 4 * tick_s > levels[i]:
        i += 1
    if levels[i] != current or i == 0:
        return levels[i]
    return levels[i - 1] if 8 * tick_s <= levels[i - 1] else levels[i]


STATUS_ICON = {"queued": ":material/schedule:", "running": ":material/autorenew:", "done": ":material/check_circle:",
               "failed": ":material/error:", "cancelled": ":material/cancel:", "interrupted": ":material/warning:"}


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


PROGRESS_COLUMN = {"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                               format="percent")}


def heat_table(matrix, vmin: float = 0.0, vmax: float = 1.0, digits: int = 2):
    """A numeric matrix as a table whose cells are coloured like a heatmap (Viridis), for ``st.dataframe``.

    Why not a plotly heatmap: on a page that draws no other chart, the browser first loads and compiles
    plotly.js (about 2 s of the first Explore visit on a 2-core machine: Explore opened in Chromium with and
    without its heatmap, same server).
    The table shows the same numbers, exactly, and its labels stay plain text."""
    from plotly.colors import sample_colorscale

    def cell(value: float) -> str:
        if value != value:  # NaN: no colour
            return ""
        t = min(1.0, max(0.0, (float(value) - vmin) / ((vmax - vmin) or 1.0)))
        text = "black" if t > 0.6 else "white"   # Viridis runs from dark purple to light yellow
        return f"background-color: {sample_colorscale('Viridis', [t])[0]}; color: {text}"

    return matrix.style.map(cell).format(f"{{:.{digits}f}}")
