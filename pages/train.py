"""Train: one run or a sweep (strategies × layers × seeds), with a per-layer usefulness score to pick layers."""
from __future__ import annotations

import streamlit as st

from dff_core.endings import DEFAULT_EPOCHS, DEFAULT_PATIENCE, cap_warning
from dff_core.models.strategies import STRATEGIES
from dff_core.train.defaults import LAYER_INITS, LAYER_LR_MULT, scale_defaults, scale_defaults_text
from dff_core.layers import parse_layers
from dff_core.estimates import estimate_text
from jobs import estimates, submit
from pages import charts
from pages.common import database, empty_state, plain, reported, show_error, user_errors
from pages.train_options import fast_path_settings
from storage import views

STRATEGY_HELP = {
    "id": "ID embedding only (no features)", "replace": "frozen feature + trainable adapter, no ID table",
    "init": "ID table initialised from the features' PCA", "caption": "caption embedding gated with the ID",
    "add": "ID + feature", "concat": "[ID; feature] → linear", "gate": "gated ID/feature fusion",
    "dff": "Dual Feature Fusion: learned layer weights + gate"}

SINGLE_LAYER = ("replace", "init", "add", "concat", "gate")  # one feature vector: several layers are averaged

db = database()
st.title("Train")
st.caption("SASRec with the item encoder of your choice. Jobs run in the background; watch them on the Jobs page.")

datasets = views.dataset_names(db)
if not datasets:
    empty_state("No datasets yet — import one on the Data page, or run the demo study from Home.",
                "pages/data.py", "Data page")
    st.stop()


@st.cache_data(show_spinner="Scoring layers against co-watch…", max_entries=32)
def _layer_scores(db_path: str, fs_id: int, status: str, items: int):
    from jobs.probes import cached_layer_usefulness
    from storage.features import get_feature_set

    return cached_layer_usefulness(db, get_feature_set(db, fs_id))


c1, c2 = st.columns(2)
dataset = c1.selectbox("Dataset", datasets, key="tr_dataset")
fsets = views.usable_feature_sets(db, dataset)
fs_names = [fs.name for fs in fsets]
feature_name = c2.selectbox("Feature set", fs_names, key=f"tr_features_{dataset}", index=0 if fs_names else None,
                            placeholder="none yet — only the 'id' strategy can train",
                            help="features extracted on the Extract page (or imported)")
fs = next((f for f in fsets if f.name == feature_name), None)
if fs is None:
    st.info("No finished feature set for this dataset yet, so only the ID-only baseline can train. Extract "
            "features on the Extract page to unlock the other strategies.", icon=":material/info:")

mode = st.segmented_control("What to launch", ["One run", "Sweep"], default="One run", key="tr_mode") or "One run"
# caption fuses a caption embedding: offered with a caption feature set only
usable = ([s for s in STRATEGIES if s != "caption" or fs.kind == "caption"] if fs is not None else ["id"])
strategy = None
if mode == "One run":  # the strategy first: it decides whether layers matter and how several are used
    strategy = st.selectbox("Strategy", usable, index=usable.index("dff") if "dff" in usable else 0,
                            key=f"tr_strategy_{bool(fs)}", format_func=lambda s: f"{s} — {STRATEGY_HELP.get(s, '')}")
    if strategy in SINGLE_LAYER:
        st.caption(f"`{strategy}` fuses one feature vector: with several layers chosen below it uses their "
                   "**mean** (not learned weights; `dff` learns them).")

# ------------------------------------------------------------------------------------------ layers
layer_text = "all"
if fs is not None and strategy != "id":
    st.subheader("Layers")
    scores, score_problem = None, None
    try:
        scores = _layer_scores(str(db.path), fs.id, fs.status, int(fs.stats.get("items") or 0))
    except user_errors() as exc:
        score_problem = str(exc)
    except Exception as exc:
        score_problem = f"{type(exc).__name__}: {exc}"
    n = fs.num_layers
    pick_mode = st.radio("Layer choice", ["all", "range", "pick"], horizontal=True, key=f"tr_layer_mode_{fs.id}",
                         format_func={"all": f"all {n} layers", "range": "a contiguous range",
                                      "pick": "pick layers"}.get)
    chosen = list(range(n))
    try:
        if pick_mode == "range":
            span = st.slider("Layers", 0, n - 1, (0, n - 1), key=f"tr_span_{fs.id}") if n > 1 else (0, 0)
            layer_text = submit.layer_spec("range", n, span=span)
        elif pick_mode == "pick":
            best = (scores.sort_values("lift", ascending=False)["layer"].head(3).astype(int).tolist()
                    if scores is not None else [n - 1])
            picked = st.multiselect("Layers", list(range(n)), default=sorted(best), key=f"tr_pick_{fs.id}",
                                    help="preselected: the three best-scored layers")
            layer_text = submit.layer_spec("pick", n, picked=picked)
        chosen = parse_layers(layer_text, n) or list(range(n))
    except user_errors() as exc:
        show_error(exc)
    if strategy in SINGLE_LAYER and len(chosen) > 1:
        st.caption(f"{len(chosen)} layers chosen: `{strategy}` will train on their mean.")
    if scores is not None:
        with st.container(border=True):  # the chart's toolbar stays inside the box, off the layer field above
            st.altair_chart(charts.layer_usefulness(scores, chosen), width="stretch")
        st.caption(f"Scored on {scores.attrs.get('items', '?')} items from training histories only; highlighted: "
                   f"the layers you chose ({views.layers_text(chosen, n)}). Cheap, not a substitute for training "
                   "— but layers near 1.0 carry little about what people watch together.")
        flat = [int(r["layer"]) for r in scores.to_dict("records") if str(r.get("note", "")).startswith("no variance")]
        if flat:  # scored as no signal, and why (dff_core.probes)
            st.caption(plain(f"Layer(s) {views.layers_text(flat, n)}: no variance (every item has the same vector "
                             "there), scored as no signal."))
    elif score_problem:
        st.warning(plain(f"No layer scores for {fs.name!r}: {score_problem}"))

# ---------------------------------------------------------------------------------------- settings
with st.expander("Hyper-parameters", expanded=False):
    h = st.columns(4)
    scaled = scale_defaults(views.dataset_users(db, dataset))  # keyed by dataset: a new dataset starts from its own
    settings = {
        "epochs": int(h[0].number_input("Epochs", 1, 1000, DEFAULT_EPOCHS, key="tr_epochs",
                                        help="the cap: runs end by early stopping (patience)")),
        "batch_size": int(h[1].number_input("Batch size", 8, 4096, int(scaled["batch_size"]), step=32,
                                            key=f"tr_batch_{dataset}", help=f"batch and learning rate: "
                                            f"{scale_defaults_text()} (measured: README, Fast path: training)")),
        "lr": float(h[2].number_input("Learning rate", 1e-5, 1.0, float(scaled["lr"]), format="%.4f",
                                      key=f"tr_lr_{dataset}")),
        "patience": int(h[3].number_input("Early-stopping patience", 0, 100, DEFAULT_PATIENCE, key="tr_patience",
                                          help="evaluations without improvement; 0 = never stop early")),
    }
    h = st.columns(4)
    settings["hidden"] = int(h[0].number_input("Hidden size", 8, 1024, 64, step=8, key="tr_hidden"))
    settings["max_len"] = int(h[1].number_input("Max sequence length", 5, 500, 50, key="tr_maxlen"))
    settings["dropout"] = float(h[2].number_input("Dropout", 0.0, 0.9, 0.2, step=0.05, key="tr_dropout"))
    settings["layer_lr_mult"] = float(h[3].number_input(
        "DFF layer lr ×", 0.0, 1000.0, LAYER_LR_MULT, key="tr_layer_lr",
        help="dff only: the layer logits learn at learning rate × this (1 = the shared rate, which leaves the "
             "softmax near uniform)"))
    h = st.columns(4)
    settings["layer_init"] = h[0].selectbox(
        "DFF layer start", list(LAYER_INITS), key="tr_layer_init",
        help="dff only: uniform weights, or start from the layers' usefulness scores shown above")
    settings["lr_decay"] = float(h[1].number_input(
        "LR decay on a plateau", 0.05, 1.0, float(scaled["lr_decay"]), step=0.05,
        key=f"tr_lrdecay_{dataset}", help="the learning rate is multiplied by this after each evaluation without a "
                                          "better validation metric (1 = constant)"))
    settings["feature_lr_mult"] = float(h[2].number_input(
        "Content-side lr ×", 0.0, 1000.0, float(scaled["feature_lr_mult"]), step=0.1, key=f"tr_featlr_{dataset}",
        help="fusion strategies only: the projection, gate and adapter learn at learning rate × this (they move "
             "every item at once)"))
    settings.update(fast_path_settings("tr"))
st.caption(f"{settings['epochs']} epochs, batch {settings['batch_size']}, lr {settings['lr']:g}"
           + (f" (× {settings['lr_decay']:g} on a plateau)" if settings["lr_decay"] < 1 else "") + ", hidden "
           f"{settings['hidden']}, patience {settings['patience']}; "
           + ({"sampled": "sampled softmax", "gbce": "gBCE", "logq": "logQ-corrected sampled softmax"}.get(
                 settings["loss"], "full softmax")
              + ("" if settings["loss"] == "full" else f", {settings['negatives']} shared negatives"
                 if settings["loss"] == "logq" else f", {settings['negatives']} {settings['negative_sampler']} negatives")) + f"; device {settings['device']}, amp {settings['amp']}, {settings['batching']} batches.")
cap_note = cap_warning(settings["epochs"], settings["patience"], views.epochs_needed(db, dataset))
if cap_note:
    st.warning(cap_note, icon=":material/hourglass_bottom:")

# ------------------------------------------------------------------------------------------ launch
if mode == "One run":
    c2, c3 = st.columns([1, 2])
    seed = c2.number_input("Seed", 0, 10_000, 42, key="tr_seed")
    study = c3.text_input("Study (optional)", key="tr_study", help="groups runs on the Compare page")
    with reported("no estimate"):
        st.caption(estimate_text(estimates.training_cost(
            db, dataset, [strategy], settings,
            runs=[{"features": fs.name if fs and strategy != "id" else None, "layers": layer_text}])))
    if st.button("Launch training", type="primary", key="tr_launch"):
        try:
            job_id = submit.enqueue_train(db, dataset, strategy, fs.name if fs else None, layer_text, settings,
                                          int(seed), study)
        except user_errors() as exc:
            show_error(exc, "Cannot launch")
        else:
            st.success(plain(f"Queued training job #{job_id}: {strategy} on {dataset}"
                             + (f" with {fs.name} layers {layer_text}" if fs and strategy != "id" else "") + "."))
            st.page_link("pages/jobs.py", label="Watch it on the Jobs page", icon=":material/pending_actions:")
else:
    st.subheader("Sweep")
    default = [s for s in ("id", "replace", "gate", "dff") if s in usable]
    strategies = st.multiselect("Strategies", usable, default=default, key=f"tr_sw_strategies_{bool(fs)}")
    c1, c2, c3 = st.columns(3)
    layer_choices_text = c1.text_input("Layer choices (; separated)", value=layer_text, key="tr_sw_layers",
                                       disabled=fs is None,
                                       help="each choice is one run per strategy and seed, e.g. 'all; 8-20; 30'")
    seeds_text = c2.text_input("Seeds", value="1,2,3", key="tr_sw_seeds")
    study = c3.text_input("Study name", value="", key="tr_sw_study", placeholder="e.g. first-look")
    try:
        seeds = submit.parse_seeds(seeds_text)
        choices = submit.parse_layer_choices(layer_choices_text if fs is not None else "all")
        total = submit.sweep_runs(strategies, choices, seeds) if strategies else 0
        st.caption(f"{len(strategies)} strategies × {len(choices)} layer choices × {len(seeds)} seeds → "
                   f"**{total} training runs** ('id' ignores the layer choices).")
        if total:
            st.caption(estimate_text(estimates.sweep_cost(db, dataset, strategies, choices, seeds, settings,
                                                          fs.name if fs else None)))
    except user_errors() as exc:
        show_error(exc)
        seeds, choices = [], []
    if st.button("Launch sweep", type="primary", key="tr_sw_launch"):
        try:
            if not seeds:
                raise ValueError("fix the seeds first")
            job_id = submit.enqueue_sweep(db, dataset, fs.name if fs else None, strategies, choices, seeds, study,
                                          settings)
        except user_errors() as exc:
            show_error(exc, "Cannot launch")
        else:
            st.success(plain(f"Queued sweep job #{job_id} (study {study.strip()!r}); it expands into its training "
                             "jobs when it starts."))
            st.page_link("pages/jobs.py", label="Watch it on the Jobs page", icon=":material/pending_actions:")
