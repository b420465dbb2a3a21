"""Extract: run a frozen backbone over a dataset's items and store every layer, as a background job."""
from __future__ import annotations

import streamlit as st

from dff_core.estimates import extraction_estimate
from dff_core.load_estimate import load_seconds
from jobs import submit
from pages.common import database, empty_state, format_bytes, format_seconds, plain, show_error, user_errors
from storage import views
from storage.datasets import get_dataset

db = database()
st.title("Extract features")
st.caption("A frozen backbone reads each item (video frames, title, cover) and every layer's pooled hidden state "
           "is stored — one feature set per backbone and input choice.")

datasets = views.dataset_names(db)
if not datasets:
    empty_state("No datasets yet — import one on the Data page, or run the demo study from Home.",
                "pages/data.py", "Data page")
    st.stop()

families, problem = submit.backbone_families()
if problem or not families:
    st.error(f"Backbones cannot be listed, so extraction cannot be launched from here: "
             f"{problem or 'the registry lists no families'}. Features computed elsewhere can still be stored with "
             "`python -m dff_core import-features NAME --dataset D --npz FILE`.", icon=":material/block:")
    st.stop()

def free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``, ... : the first one no feature set of the dataset has."""
    n, candidate = 2, name
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


by_name = {f["family"]: f for f in sorted(families, key=lambda f: not f.get("available", True))}
left, right = st.columns([3, 2], gap="large")
with left:
    dataset = st.selectbox("Dataset", datasets, key="ex_dataset")
    family = st.selectbox("Backbone family", list(by_name), key="ex_family")
    fam = by_name[family]
    if fam["description"]:  # in full under the picker: a picker's option text is cut at its width
        st.caption(plain(fam["description"]))
    available = bool(fam.get("available", True))
    if not available:
        st.warning(fam.get("why") or fam.get("reason") or f"{family} is not usable on this machine.",
                   icon=":material/warning:")
    needs_source = bool(fam.get("needs_source"))
    checkpoint = st.text_input(
        "Checkpoint (Hugging Face id or local folder)" + ("" if needs_source else " — empty: the built-in weights"),
        key=f"ex_checkpoint_{family}", value=str(fam.get("default_checkpoint") or ""),
        placeholder="e.g. Qwen/Qwen2-VL-2B-Instruct or /models/qwen2-vl")
    inputs = st.multiselect("Inputs", fam["inputs"], default=[i for i in fam["default_inputs"] if i in fam["inputs"]],
                            key=f"ex_inputs_{family}")
    frames = 8
    if "frames" in fam["inputs"]:
        frames = st.slider("Frames per video", 1, 32, 8, key="ex_frames", disabled="frames" not in inputs,
                           help="sampled uniformly over each clip")
    poolings = fam["poolings"] or ["all_mean"]
    default_pool = fam["default_pooling"] if fam["default_pooling"] in poolings else poolings[0]
    pooling = st.selectbox("Pooling", poolings, index=poolings.index(default_pool), key=f"ex_pooling_{family}")
    c1, c2, c3 = st.columns(3)
    batch = c1.number_input("Batch size", 1, 256, int(fam.get("default_batch_size") or 8), key=f"ex_batch_{family}",
                            help="items per forward pass; the backbone's default was measured fastest on a CPU")
    dtype = c2.selectbox("Stored as", ["float16", "float32"], key="ex_dtype")
    caption = c3.checkbox("Caption route", key="ex_caption", disabled=not fam.get("can_caption"),
                          help="the LVLM writes a caption per item and a sentence encoder embeds it "
                               "(a one-layer feature set for the 'caption' strategy)")
    d1, d2, d3 = st.columns(3)
    device = d1.selectbox("Device", submit.device_choices(), key="ex_device",
                          help="auto: the first CUDA GPU when there is one, else the CPU")
    quantizations = fam.get("quantizations") or ["none"]
    quantize = d3.selectbox("Quantise", quantizations, key=f"ex_quantize_{family}",
                            help="int8: dynamic quantisation of the language model's linear layers (CPU only; "
                                 "faster, but below 0.99 cosine to float32 on SmolLM2's last layers)")
    compute_dtype = d2.selectbox("Compute in", ["auto", "float32", "bfloat16"], key=f"ex_compute_{family}",
                                 disabled=quantize == "int8",
                                 help=f"auto: bfloat16 on CUDA; on CPU {fam.get('cpu_auto_dtype', 'float32')} "
                                      "when the CPU has native bfloat16, else float32")
    default_name = free_name(f"{family}-{'-'.join(inputs) or 'none'}" + ("-caption" if caption else ""),
                             set(views.feature_set_table(db, dataset)["name"]))
    name = st.text_input("Feature set name", value=default_name, key=f"ex_name_{family}_{default_name}",
                         help="names are unique per dataset; the suggestion skips names already stored")

ds = get_dataset(db, dataset)
items = int(ds.stats.get("items", 0))
with right:
    st.subheader("Estimate")
    known_layers, known_dim = fam.get("num_layers") or fam.get("layers"), fam.get("dim") or fam.get("hidden_size")
    known = bool(known_layers and known_dim and not checkpoint.strip())  # a custom checkpoint may differ
    if caption:
        layers, dim = 1, 384
        st.caption("Caption route: one layer, the sentence encoder's 384 dimensions (MiniLM).")
    elif known:  # facts of the built-in weights: shown as text, not as inputs that cannot be changed
        layers, dim = int(known_layers), int(known_dim)
        st.caption(f"{family}'s built-in weights store {layers} layers × {dim} dimensions per item.")
    else:
        c1, c2 = st.columns(2)
        layers = int(c1.number_input("Layers stored", 1, 512, int(known_layers or 25), key=f"ex_layers_{family}",
                                     help="for another checkpoint: its hidden layers + 1"))
        dim = int(c2.number_input("Hidden size", 1, 16384, int(known_dim or 1024), key=f"ex_dim_{family}",
                                  help="the checkpoint's hidden size"))
    est = extraction_estimate(items, layers, dim, family, inputs, int(frames), dtype=dtype,
                              measured_items_per_s=views.family_throughput(db, family))
    load_low, load_high = load_seconds(family)
    m1, m2 = st.columns(2)
    m1.metric("Disk", format_bytes(est["bytes"]))
    m2.metric("Time", f"{format_seconds(est['seconds'] + load_low)} – {format_seconds(est['seconds'] + load_high)}")
    rate = (f"{est['items_per_s']:.2f} items/s, measured on earlier {family} extractions here" if est["measured"]
            else f"about {est['items_per_s']:.2f} items/s, a default for {family} on CPU (no earlier run to measure)")
    st.caption(f"Disk = {items:,} items × {layers} layers × {dim} dims × {2 if dtype == 'float16' else 4} "
               f"bytes. Time = loading the model ({format_seconds(load_low)}–{format_seconds(load_high)}) + "
               f"{format_seconds(est['seconds'])} for the items at {rate}.")

if st.button("Launch extraction", type="primary", key="ex_launch", disabled=not available):
    try:
        if needs_source and not checkpoint.strip():
            raise ValueError(f"{family} needs a checkpoint: a Hugging Face id or a local folder")
        job_id = submit.enqueue_extract(db, dataset=dataset, backbone=submit.backbone_spec(family, checkpoint),
                                        name=name, inputs=inputs, num_frames=int(frames), pooling=pooling,
                                        batch_size=int(batch), dtype=dtype, caption=caption, device=device,
                                        compute_dtype="auto" if quantize == "int8" else compute_dtype,
                                        quantize=quantize)
    except user_errors() as exc:
        show_error(exc, "Cannot launch")
    except Exception as exc:  # an unexpected problem in the registry: still a message, not a traceback
        show_error(exc, "Cannot launch")
    else:
        st.success(plain(f"Queued extraction job #{job_id}: {family} → feature set {name!r}."))
        st.page_link("pages/jobs.py", label="Watch it on the Jobs page", icon=":material/pending_actions:")

st.subheader(f"Feature sets of {plain(dataset)}")
table = views.feature_set_table(db, dataset)
if table.empty:
    st.info(plain(f"No feature sets for {dataset!r} yet."), icon=":material/info:")
else:
    st.dataframe(table, hide_index=True, width="stretch")
