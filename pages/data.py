"""Data: import a dataset (MicroLens folder, generic CSV/Parquet by path or upload) and look at it."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from pages import charts
from pages.common import database, plain, server_path, show_error, user_errors
from storage import views
from storage.datasets import get_dataset

db = database()
st.title("Data")

# --------------------------------------------------------------------------------------------- import
st.subheader("Import a dataset")
DENSITY_COLUMN = {"density": st.column_config.NumberColumn("density", format="percent",
                                                          help="interactions / (users × items)")}


def _preprocessing_inputs(key: str):
    c1, c2, c3 = st.columns(3)
    min_inter = c1.number_input("Drop users with fewer interactions than", min_value=3, value=5, step=1,
                                key=f"{key}_min")
    max_items = c2.number_input("Keep each user's last N items (0 = all)", min_value=0, value=0, step=1,
                                key=f"{key}_max")
    top_items = c3.number_input("Keep only the N most-interacted items (0 = all)", min_value=0, value=0, step=100,
                                key=f"{key}_top", help="applied first: a denser, cheaper catalogue (fewer items to "
                                                       "extract); same as the CLI's --top-items")
    return int(min_inter), int(max_items) or None, int(top_items) or None


def _import(name: str, read, min_inter: int, max_items: int | None, top_items: int | None = None) -> None:
    """Run one import; DataError and other user errors become one red line (nothing is stored)."""
    from dff_core.data.importers import Preprocessing

    try:
        pre = Preprocessing(min_interactions=min_inter, max_items_per_user=max_items, top_items=top_items)
        if not name.strip():
            raise ValueError("give the dataset a name")
        with st.spinner("Reading, validating and storing…"):
            ds = read(name.strip(), pre)
    except user_errors() as exc:
        show_error(exc, "Import failed, nothing was stored")
        return
    s = ds.stats
    st.success(f"Imported “{plain(ds.name)}”: {s['users']:,} users, {s['items']:,} items, {s['interactions']:,} interactions.")
    if ds.warnings:
        st.warning(f"{len(ds.warnings)} validation warning(s) — the data was imported, but these items lack "
                   "something (usually a media file):", icon=":material/warning:")
        st.dataframe(pd.DataFrame({"warning": ds.warnings}), hide_index=True, width="stretch", height=200)


tab_ml, tab_paths, tab_upload = st.tabs(["MicroLens folder", "Generic files by path", "Upload generic files"])
with tab_ml:
    with st.form("import_ml"):
        st.caption("`*pairs*.tsv` (user TAB items in time order), `*titles*.csv` (`item,title`), optional "
                   "`*metadata*.csv`, `covers/<item>.jpg`, `videos/<item>.mp4`.")
        name = st.text_input("Dataset name", key="ml_name", placeholder="e.g. ml50k")
        folder = st.text_input("Folder", key="ml_folder", placeholder="../shared/data/microlens")
        pre = _preprocessing_inputs("ml")
        if st.form_submit_button("Import", type="primary"):
            from jobs.datasets import import_microlens

            def read(n, p):
                if not folder.strip():
                    raise ValueError("enter the MicroLens folder path")
                return import_microlens(db, n, server_path(folder.strip(), "folder"), p)
            _import(name, read, *pre)

with tab_paths:
    with st.form("import_paths"):
        st.caption("Interactions CSV or Parquet `user_id,item_id[,timestamp]`; items CSV "
                   "`item_id,title[,video_path,cover_path,...]` (media paths relative to the media folder).")
        name = st.text_input("Dataset name", key="gen_name")
        c1, c2, c3 = st.columns(3)
        inter_path = c1.text_input("Interactions file", key="gen_inter")
        items_path = c2.text_input("Items file", key="gen_items")
        media_path = c3.text_input("Media folder (optional)", key="gen_media",
                                   help="default: the items file's folder")
        pre = _preprocessing_inputs("gen")
        if st.form_submit_button("Import", type="primary"):
            from jobs.datasets import import_generic

            def read(n, p):
                if not inter_path.strip() or not items_path.strip():
                    raise ValueError("enter both the interactions file and the items file")
                return import_generic(db, n, server_path(inter_path.strip(), "interactions file"),
                                      server_path(items_path.strip(), "items file"),
                                      server_path(media_path.strip(), "media folder") or None, p)
            _import(name, read, *pre)

with tab_upload:
    with st.form("import_upload", clear_on_submit=False):
        st.caption("Uploaded files are kept under the database folder (`uploads/<dataset>-<hash>/`), written only "
                   "once the name is free; a failed import removes them.")
        name = st.text_input("Dataset name", key="up_name")
        u1, u2 = st.columns(2)
        inter_up = u1.file_uploader("Interactions (CSV or Parquet)", type=["csv", "parquet", "pq"], key="up_inter")
        items_up = u2.file_uploader("Items (CSV)", type=["csv"], key="up_items")
        media_up = st.text_input("Media folder on this machine (optional)", key="up_media")
        pre = _preprocessing_inputs("up")
        if st.form_submit_button("Import", type="primary"):
            from jobs.datasets import import_uploads

            def read(n, p):
                if inter_up is None or items_up is None:
                    raise ValueError("upload both the interactions file and the items file")
                return import_uploads(db, n, (inter_up.name, inter_up.getvalue()), (items_up.name, items_up.getvalue()),
                                      server_path(media_up.strip(), "media folder") or None, p)
            _import(name, read, *pre)

# ------------------------------------------------------------------------------------------- datasets
st.subheader("Datasets")
table = views.dataset_table(db)
if table.empty:
    st.info("No datasets yet — import one above, or build the demo from the Home page.")
    st.stop()
st.dataframe(table, hide_index=True, width="stretch", column_config=DENSITY_COLUMN)

chosen = st.selectbox("Look at", table["name"].tolist(), key="data_dataset")
ds = get_dataset(db, chosen)
summary = views.dataset_summary(ds)
cols = st.columns(6)
cols[0].metric("Users", f"{summary['users']:,}")
cols[1].metric("Items", f"{summary['items']:,}")
cols[2].metric("Interactions", f"{summary['interactions']:,}")
cols[3].metric("Density", f"{summary['density']:.2%}" if summary["density"] is not None else "—",
               help="interactions / (users × items)")
cols[4].metric("Median sequence", f"{summary['median_length']:g}" if summary["median_length"] else "—")
cols[5].metric("Items seen once", f"{summary['items_seen_once']:,}")
st.caption(f"source: {plain(ds.source)} · root: {plain(ds.root or '—')} · preprocessing: {plain(views.preprocessing_text(ds.params))} · "
           f"videos: {summary['videos']}, covers: {summary['covers']}")
if ds.warnings:
    with st.expander(f"{len(ds.warnings)} validation warning(s) from the import"):
        st.dataframe(pd.DataFrame({"warning": ds.warnings}), hide_index=True, width="stretch")


@st.cache_data(show_spinner=False, max_entries=16)
def _plots_data(db_path: str, dataset_id: int, created: str):
    return views.sequence_lengths(db, dataset_id), views.item_popularity(db, dataset_id)


lengths, pop = _plots_data(str(db.path), ds.id, str(ds.created_at))
left, right = st.columns(2)
left.altair_chart(charts.sequence_lengths(lengths), width="stretch")
right.altair_chart(charts.popularity(pop), width="stretch")
head = pop[pop["cumulative share"] <= 0.5]
st.caption(f"The top {len(head) + 1} items ({(len(head) + 1) / max(1, len(pop)):.1%} of the catalogue) take half "
           "of all interactions.")

with st.expander("Delete a feature set", expanded=False):
    from storage.features import list_feature_sets

    names = [fs.name for fs in list_feature_sets(db, ds.id)]
    if not names:
        st.caption("This dataset has no feature sets.")
    else:
        doomed = st.selectbox("Feature set", names, key="delete_fs_pick")
        st.caption("Removes its vectors; runs trained on it keep their results. "
                   "A stuck or half-finished import can be deleted here and imported again.")
        if st.button("Delete feature set", key="delete_fs_button",
                     disabled=not st.checkbox(f"Yes, delete “{plain(doomed)}”", key="delete_fs_sure")):
            from storage.removal import delete_features
            try:
                delete_features(db, doomed, dataset=ds.id)
                st.success(f"Deleted feature set “{plain(doomed)}”.")
                st.rerun()
            except user_errors() as exc:
                show_error(exc, "Delete failed")

with st.expander("Delete this dataset"):
    st.caption(f"Removes “{plain(chosen)}” and everything derived from it (feature sets, runs, metrics).")
    sure = st.checkbox(f"Yes, delete “{plain(chosen)}”", key="delete_sure")
    if st.button("Delete", disabled=not sure, key="delete_button"):
        from storage.removal import delete_dataset
        try:
            delete_dataset(db, chosen)
            st.success(f"Deleted “{plain(chosen)}”.")
            st.rerun()
        except user_errors() as exc:
            show_error(exc, "Delete failed")
