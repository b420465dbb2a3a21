"""Extract: run a frozen backbone over a dataset's items and store every layer, as a background job."""
from __future__ import annotations

import streamlit as st

from pages import queries as q
from pages.common import database, empty_state, show_error, user_errors
from storage.datasets import get_dataset

db = database()
st.title("Extract features")
st.caption("A frozen backbone reads each item (video frames, title, cover) and every layer's pooled hidden state "
           "is stored — one feature set per backbone and input choice.")

datasets = q.dataset_names(db)
if not datasets:
    empty_state("No datasets yet — import one on the Data page (or run the demo study from Home).",
                "pages/data.py", "Data page")
    st.stop()

families, problem = q.backbone_families()
if problem:
    st.error(f"Backbones cannot be listed, so extraction cannot be launched from here: {problem}")
    st.stop()
if not families:
    st.warning("The backbone registry lists no families.")
    st.stop()

left, right = st.columns([3, 2])
with left:
    dataset = st.selectbox("Dataset", datasets, key="ex_dataset")
    by_name = {f["name"]: f for f in families}
    family = st.selectbox("Backbone family", list(by_name), key="ex_family",
                          format_func=lambda n: f"{n} — {by_name[n].get('description', '')}"[:120])
    fam = by_name[family]
    checkpoint = st.text_input("Checkpoint (Hugging Face id or local folder; empty = the family's built-in)",
                               key="ex_checkpoint", value=str(fam.get("default_checkpoint") or ""),
                               placeholder="e.g. Qwen/Qwen2-VL-2B-Instruct or /models/qwen2-vl")
    default_inputs = [i for i in fam["default_inputs"] if i in fam["inputs"]] or fam["inputs"][:1]
    inputs = st.multiselect("Inputs", fam["inputs"], default=default_inputs, key=f"ex_inputs_{family}")
    frames = st.slider("Frames per video", 1, 32, 8, key="ex_frames", disabled="frames" not in inputs,
                       help="sampled uniformly over the clip")
    poolings = fam["poolings"] or ["all_mean"]
    default_pool = fam.get("default_pooling") if fam.get("default_pooling") in poolings else poolings[0]
    pooling = st.selectbox("Pooling", poolings, index=poolings.index(default_pool), key=f"ex_pooling_{family}")
    c1, c2, c3 = st.columns(3)
    batch = c1.number_input("Batch size", 1, 256, 8, key="ex_batch")
    dtype = c2.selectbox("Stored as", ["float16", "float32"], key="ex_dtype")
    caption = c3.checkbox("Caption route", key="ex_caption", disabled=not fam.get("can_caption"),
                          help="the LVLM writes a caption per item and a sentence encoder embeds it "
                               "(one-layer feature set for the 'caption' strategy)")
    spec = q.backbone_spec(family, checkpoint)
    default_name = f"{family}-{'-'.join(inputs) or 'none'}" + ("-caption" if caption else "")
    name = st.text_input("Feature set name", value=default_name, key=f"ex_name_{family}")

ds = get_dataset(db, dataset)
items = int(ds.stats.get("items", 0))
with right:
    st.subheader("Estimate")
    known_layers = fam.get("num_layers") or fam.get("layers")
    known_dim = fam.get("dim") or fam.get("hidden_size")
    c1, c2 = st.columns(2)
    layers = c1.number_input("Layers stored", 1, 200, int(known_layers or 25), key=f"ex_layers_{family}",
                             disabled=caption, help="from the registry when known; else your best guess")
    dim = c2.number_input("Hidden size", 1, 16384, int(known_dim or 1024), key=f"ex_dim_{family}")
    if caption:
        layers = 1
    est = q.extraction_estimate(items, int(layers), int(dim), family, inputs, int(frames), dtype=dtype)
    st.metric("Disk", q.format_bytes(est["bytes"]),
              help="items × layers × dim × bytes per value (2 for float16)")
    st.metric("Time (rough estimate)", q.format_seconds(est["seconds"]),
              help=f"at about {est['items_per_s']:.2f} items/s for {family} on CPU — an estimate, not a measurement")
    st.caption(f"{items:,} items × {int(layers)} layers × {int(dim)} dims × {2 if dtype == 'float16' else 4} bytes. "
               f"Time assumes ~{est['items_per_s']:.2f} items/s; it depends on the machine.")

if st.button("Launch extraction", type="primary", key="ex_launch", disabled=not inputs):
    try:
        job_id = q.enqueue_extract(db, dataset=dataset, backbone=spec, name=name, inputs=inputs,
                                   num_frames=int(frames), pooling=pooling, batch_size=int(batch), dtype=dtype,
                                   caption=caption)
    except user_errors() as exc:
        show_error(exc, "Cannot launch")
    else:
        st.success(f"Queued extraction job #{job_id}: {spec} → feature set {name!r}.")
        st.page_link("pages/jobs.py", label="Watch it on the Jobs page", icon="⏱️")

st.subheader("Stored feature sets")
table = q.feature_set_table(db, dataset)
if table.empty:
    st.info(f"No feature sets for {dataset!r} yet.")
else:
    st.dataframe(table, hide_index=True, width="stretch")
