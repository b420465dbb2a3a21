"""Explore: a video's nearest neighbours under several representations side by side, a user's history and
two runs' top-10 for them, and how much representations agree about neighbours."""
from __future__ import annotations

import os

import streamlit as st

from jobs import neighbours as nb
from pages.common import clip, database, empty_state, heat_table, plain, reported, show_error, user_errors
from storage import Database, views
from storage.datasets import get_dataset

THUMB = 96

db = database()
st.title("Explore")
st.caption("What does a representation do? Nearest videos by cosine similarity under feature-set layers and "
           "trained runs' item vectors, and what runs recommend to a user.")

datasets = views.dataset_names(db)
if not datasets:
    empty_state("No datasets yet — build the demo from Home, or import one on the Data page.",
                "pages/data.py", "Data page")
    st.stop()
dataset = st.selectbox("Dataset", datasets, key="xp_dataset") if len(datasets) > 1 else datasets[0]


@st.cache_resource(show_spinner="Loading the catalogue…", max_entries=4)
def _catalog(path: str, dataset: str, stamp: str) -> nb.Catalog:
    return nb.load_catalog(Database(path), dataset)


@st.cache_resource(show_spinner="Building the neighbour index…", max_entries=32)
def _index(path: str, key: str, fingerprint: str, metric: str = nb.DEFAULT_METRIC) -> nb.NeighbourIndex:
    return nb.get_index(Database(path), nb.Source.from_key(key), metric=metric)


@st.cache_resource(show_spinner="Loading the run's model…", max_entries=8)
def _run_model(path: str, run_id: int, fingerprint: str) -> nb.RunModel:
    return nb.get_run_model(Database(path), run_id)


@st.cache_data(show_spinner="Comparing neighbour lists…", max_entries=16)
def _agreement(path: str, keys: tuple[str, ...], labels: tuple[str, ...], fingerprints: tuple[str, ...], k: int,
               metric: str = nb.DEFAULT_METRIC):
    return nb.agreement({label: _index(path, key, fp, metric) for key, label, fp in zip(keys, labels, fingerprints)},
                        k=k)


_fingerprints: dict[str, str] = {}  # this run's: each costs database reads, and a source is asked up to 3 times
_labels: dict[str, str] = {}


def fingerprint(source: nb.Source) -> str:
    if source.key not in _fingerprints:
        _fingerprints[source.key] = nb.fingerprint(db, source)
    return _fingerprints[source.key]


def describe(source: nb.Source) -> str:
    if source.key not in _labels:
        _labels[source.key] = nb.describe(db, source)
    return _labels[source.key]


def index_for(source: nb.Source) -> nb.NeighbourIndex:
    return _index(str(db.path), source.key, fingerprint(source), metric)


@st.cache_data(show_spinner=False, max_entries=4096)
def _thumbnail(path: str, stamp: float, width: int) -> tuple[bytes | None, str | None]:
    return nb.thumbnail(path, width)


def cover(item: int, width: int):
    """The item's cover at ``width`` pixels, or a placeholder and the reason when there is none or it cannot be
    decoded. Made once per file (cached; Streamlit would otherwise shrink every cover on every page run)."""
    path = catalog.media(item, "cover")
    if not path:
        return nb.placeholder(width), None
    try:
        image, problem = _thumbnail(path, os.path.getmtime(path), width)
    except OSError as exc:
        image, problem = None, f"cannot be read ({exc.strerror})"
    return (nb.placeholder(width), f"cover unreadable: {problem}") if problem else (image, None)


def thumb(where, item: int, caption: str | None = None) -> None:
    image, problem = cover(item, THUMB)
    title = catalog.items.at[item, "title"] or catalog.items.at[item, "item_id"]
    text = caption or ("cover unreadable" if problem else None)
    where.image(image, width=THUMB, caption=plain(text) if text else None, alt=title)


def item_row(rank: int, item: int, extra: str = "") -> None:
    """A neighbour or recommendation in one row: thumbnail, then the title as plain text (escaped, never
    Markdown) over rank, id and score. Three elements a row: a page shows 30-50 of them."""
    row = catalog.items.iloc[item]
    with st.container(horizontal=True, wrap=False, vertical_alignment="center", gap="small"):
        thumb(st, item)
        title = plain(row["title"], limit=60) if row["title"] else "(no title)"
        st.markdown(f"{title}  \n{rank}. {plain(row['item_id'], code=True)} {extra}", width="stretch")


ds = get_dataset(db, dataset)
catalog = _catalog(str(db.path), dataset, f"{ds.id}:{ds.created_at}")
sources = nb.available_sources(db, dataset)
feature_sets = [obj for kind, obj in sources if kind == "features"]
runs = [obj for kind, obj in sources if kind == "run"]
if not sources:
    empty_state("Nothing to explore for this dataset yet: extract features on the Extract page (or import them "
                "with `python -m dff_core import-features`), or train a run on the Train page.",
                "pages/extract.py", "Extract page")
    st.stop()

# ------------------------------------------------------------------------------------- pick a video
st.subheader("Video")
c_search, c_pick = st.columns([1, 2])
text = c_search.text_input("Search by title or id", key="xp_search", placeholder="e.g. cat, or an item id")
matches = catalog.search(text, limit=200)
if matches.empty:
    st.warning(f"No video matches “{plain(text)}” — try part of a title or an id.")
    st.stop()
item = c_pick.selectbox("Video", matches["idx"].tolist(), key="xp_item",
                        format_func=lambda i: f"{catalog.items.at[i, 'title'][:80] or '(no title)'} · "
                                              f"{catalog.items.at[i, 'item_id']}",
                        help=f"{len(matches)} of {len(catalog.items)} videos match; most watched first")
row = catalog.items.iloc[item]
c_cover, c_video, c_info = st.columns([1, 1.4, 2])
image, problem = cover(item, 200)
c_cover.image(image, width=200)
if problem:
    c_cover.caption(plain(problem))
if catalog.media(item, "video"):
    c_video.video(catalog.media(item, "video"))
else:
    c_video.caption("no clip for this video")
popularity_rank = int((catalog.items["popularity"] > row["popularity"]).sum()) + 1
with c_info:
    st.text(row["title"] or "(no title)")   # user text: shown as typed, never as Markdown
    st.markdown(plain(row["item_id"], code=True))
    st.metric("Popularity", f"{int(row['popularity'])} views", help="interactions in the dataset",
              delta=f"#{popularity_rank} of {len(catalog.items)} by views", delta_color="off", delta_arrow="off")
cowatch = catalog.cooccurrence(item)
c_info.caption(f"watched together with {len(cowatch)} other videos in users' training histories")

# ------------------------------------------------------------------------------- representations
st.subheader("Nearest videos")
labels = {}
for fs in feature_sets:
    labels[f"fs:{fs.id}"] = f"{fs.name} ({fs.kind}, {fs.num_layers} layers × {fs.dim})"
for run in runs:
    labels[f"run:{run.id}"] = describe(nb.Source("run", run_id=run.id))
choices = list(labels)
c_n, c_k, c_m = st.columns([1, 1, 1.2])
count = c_n.segmented_control("Representations side by side", [2, 3, 4], default=min(3, max(2, len(choices))),
                              key="xp_count") or 2
k = c_k.slider("Neighbours per representation", 5, 20, 10, key="xp_k")
metric = c_m.selectbox("Similarity", list(nb.METRICS), key="xp_metric", format_func=nb.METRIC_LABELS.get,
                       help="Centred (default): each representation's mean vector is removed before the cosine. "
                            "Mean-pooled LLM hidden states share one dominant direction, so on raw cosine any two "
                            "videos score about 0.999 and neighbours differ only in the fourth decimal; centred, "
                            "unrelated videos score near 0. Removing the 5 dominant directions as well doubled "
                            "how often a demo video's neighbours share its topic (README, Explore). Same as "
                            "`neighbours --similarity`.")
st.caption(f"Scores: {nb.METRIC_LABELS[metric]} (1 = same direction, 0 = unrelated"
           + (", as for two random videos)" if metric != "raw" else "; raw scores of LLM layers all sit near 1)"))

chosen: list[nb.Source] = []
pick_cols = st.columns(count)
for slot, col in enumerate(pick_cols):
    # feature sets first, each slot another layer (stored vectors: instant); a run's vectors need its model
    # (torch, seconds), so runs are there to choose, not the default of a first visit
    choice = col.selectbox(f"Representation {slot + 1}", choices, index=slot % (len(feature_sets) or len(choices)),
                           format_func=labels.get, key=f"xp_rep_{slot}")
    if choice.startswith("fs:"):
        fs = next(f for f in feature_sets if f"fs:{f.id}" == choice)
        if fs.num_layers > 1:
            default = str([fs.num_layers // 2, fs.num_layers - 1, 0, "all"][slot % 4])  # middle layers first
            spec = col.text_input("Layers", default, key=f"xp_layers_{slot}_{fs.id}",
                                  help=f"0 = embedding output … {fs.num_layers - 1}; A-B or i,j,k = their mean; "
                                       "all = mean of every layer")
        else:
            spec = "all"
        try:
            chosen.append(nb.feature_source(db, fs.id, spec))
        except user_errors() as exc:
            col.error(str(exc), icon=":material/block:")
    else:
        chosen.append(nb.Source("run", run_id=int(choice.split(":")[1])))

shown_cols = st.columns(count)
for col, source in zip(shown_cols, chosen):
    with col, reported(f"{describe(source)}"):
        index = index_for(source)
        st.markdown(f"**{plain(describe(source))}**")
        quality = ("exact" if index.kind == "exact" else
                   f"HNSW, recall@10 {index.recall_at_10:.2f} vs exact")
        ms = index.build_seconds * 1000
        st.caption(f"{quality} · {index.size} items · built in {f'{ms:.0f} ms' if ms >= 1 else '< 1 ms'}")
        if not index.present[item]:
            st.warning("This video has no vector here (its extraction failed or has not run).")
            continue
        ids, scores = index.search(item, k)
        together = sum(1 for i in ids if cowatch.get(int(i)))
        st.caption(f":orange-badge[:material/group: {together} of {len(ids)} co-watched] with this video")
        digits = nb.score_digits(scores)
        for rank, (n, score) in enumerate(zip(ids.tolist(), scores.tolist()), 1):
            badge = f" :orange-badge[co-watched ×{cowatch[n]}]" if cowatch.get(n) else ""
            item_row(rank, n, f"· cos {score:.{digits}f}{badge}")

# ---------------------------------------------------------------------------------------- users
st.subheader("A user's recommendations")
if not runs:
    empty_state("No finished runs for this dataset yet — train one on the Train page to see what it recommends.",
                "pages/train.py", "Train page")
else:
    u_search, u_pick = st.columns([1, 2])
    utext = u_search.text_input("Search users by id", key="xp_user_search")
    users = catalog.search_users(utext)
    if not users:
        st.warning(f"No user id contains “{plain(utext)}”.")
    else:
        # no user until one is chosen: a run's model loads torch (seconds), which a first visit should not wait for
        user = u_pick.selectbox("User", users, index=None, key="xp_user", placeholder="Choose a user",
                                help="longest histories first")
        u_pick.caption("Users with the longest histories come first.")
    if users and user is None:
        st.caption("Choose a user to see their history and what "
                   + ("two runs recommend" if len(runs) > 1 else "the run recommends") + " to them next.")
    elif users:
        history = catalog.user_history(user)
        st.markdown(f"**Recent history** (last {min(10, len(history))} of {len(history)} videos, newest last)")
        hist_cols = st.columns(10)
        for col, h in zip(hist_cols, history[-10:]):
            thumb(col, h, caption=clip(catalog.items.at[h, "title"] or catalog.items.at[h, "item_id"], 28))
        run_labels = {r.id: labels[f"run:{r.id}"] for r in runs}
        run_ids = list(run_labels)[::-1]          # newest first: the runs just trained are the ones to see
        st.caption("Score: the run's own ranking score for the video (the dot product of the user's sequence "
                   "state and the video's item vector). Higher ranks higher; it compares videos within one run, "
                   "not across runs.")
        rc = st.columns(2)
        if len(run_ids) == 1:  # one run: one list, not the same list twice
            rc[1].info("Train a second run (Train page) to see two runs' recommendations side by side.",
                       icon=":material/info:")
        for slot, col in enumerate(rc[:len(run_ids)]):
            run_id = col.selectbox(f"Run {slot + 1}", run_ids, index=min(slot, len(run_ids) - 1),
                                   format_func=run_labels.get, key=f"xp_run_{slot}")
            with col, reported(f"run #{run_id}"):
                model = _run_model(str(db.path), run_id, fingerprint(nb.Source("run", run_id=run_id)))
                rec = model.recommend(user, k=10)
                test = catalog.items.iloc[rec.test_item]
                verdict = (f":green-badge[:material/target: test item hit at #{rec.test_rank + 1}]" if rec.hit else
                           f":gray-badge[test item ranked #{rec.test_rank + 1}]")
                st.markdown(f"{verdict} — held-out next video:")
                st.text(clip(test["title"] or test["item_id"], 50))
                for rank, (n, score) in enumerate(zip(rec.items, rec.scores), 1):
                    mark = " :green-badge[:material/target: test item]" if n == rec.test_item else ""
                    item_row(rank, n, f"· score {score:.2f}{mark}")

# ------------------------------------------------------------------------------------- agreement
st.subheader("Agreement between representations")
st.caption("Overlap@k of neighbour lists (share of the k nearest videos two representations have in common), "
           "over a sample of up to 300 videos. Add every layer of a feature set to see which layers see videos "
           "alike.")
layered = [fs for fs in feature_sets if fs.num_layers > 1]
extra_layers = []
if layered:
    a1, a2 = st.columns([2, 1])
    per_layer = a1.selectbox("Add every layer of", [None] + [fs.id for fs in layered], key="xp_agree_fs",
                             format_func=lambda i: "—" if i is None else next(f.name for f in layered if f.id == i))
    step = a2.number_input("every n-th layer", 1, 8, 1, key="xp_agree_step")
    if per_layer is not None:
        fs = next(f for f in layered if f.id == per_layer)
        extra_layers = [nb.Source("features", feature_set=fs.id, layers=(l,))
                        for l in range(0, fs.num_layers, int(step))]
sources_for_matrix = list(dict.fromkeys(chosen + extra_layers))
if len(sources_for_matrix) >= 2:
    try:
        matrix = _agreement(str(db.path), tuple(s.key for s in sources_for_matrix),
                            tuple(describe(s) for s in sources_for_matrix),
                            tuple(fingerprint(s) for s in sources_for_matrix), k, metric)
        st.markdown(f"**Overlap@{k} of neighbour lists** (1 = the same {k} neighbours for every sampled video)")
        st.dataframe(heat_table(matrix), key="xp_agreement", width="stretch",
                     height=min(35 * len(matrix) + 38, 640))
    except user_errors() as exc:
        show_error(exc, "agreement")
else:
    st.info("Choose at least two different representations above to compare them.", icon=":material/info:")
