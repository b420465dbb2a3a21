"""What a study queues: one sweep whose runs answer the paper's three findings.

Every run is pinned to a *role* that the verdicts read back from the stored runs (strategy + layers):

=============  ========================================================================================
role           run
=============  ========================================================================================
id             ID embedding only (finding 2)
replace        frozen last-layer feature + adapter, no ID table (finding 2)
init           ID table initialised from the last layer's PCA (finding 2)
caption        caption embedding fused with the ID by the gate (finding 1; only with ``captions``)
gate@L         single-layer gate fusion of layer ``L`` (finding 3 curve; ``gate@last`` also serves
               findings 1 and 2 as the like-for-like "hidden state" / "fusion" run)
dff all        DFF over every stored layer (finding 3)
dff A-B        DFF over the intermediate range ``A-B`` (finding 3)
=============  ========================================================================================

Replacement, initialisation and fusion use the same (last) layer so that finding 2 compares ways of plugging
features in, not layers; the caption route is compared with the same gate over the last hidden state.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dff_core.endings import DEFAULT_EPOCHS, DEFAULT_PATIENCE

DEFAULT_SEEDS = (1, 2, 3)
DEFAULT_LAYER_POINTS = 7
# a generous cap: runs end by early stopping; one stopped by the cap while improving decides nothing
DEFAULT_SETTINGS = {"epochs": DEFAULT_EPOCHS, "patience": DEFAULT_PATIENCE}


@dataclass
class StudyRequest:
    """The study form (CLI and page): what to test and how much compute to spend."""
    dataset: str
    features: str
    captions: str | None = None
    seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    layers: list[int] | None = None          # single-layer points; None = an even subset incl. the last
    layer_points: int = DEFAULT_LAYER_POINTS
    intermediate: tuple[int, int] | None = None  # DFF range; None = the middle half of the depth
    epochs: int = DEFAULT_SETTINGS["epochs"]
    patience: int = DEFAULT_SETTINGS["patience"]
    name: str | None = None
    extra_settings: dict = field(default_factory=dict)  # other TrainConfig fields (batch_size, max_len, ...)
    engine: str = "local"                    # "ray": every run a Ray task (jobs.ray_sweep)
    address: str | None = None               # with engine "ray": a running cluster; None = a local instance

    @property
    def study(self) -> str:
        return (self.name or "").strip() or f"study-{self.dataset}-{self.features}"

    def settings(self) -> dict:
        return {**self.extra_settings, "epochs": int(self.epochs), "patience": int(self.patience)}


def even_layers(num_layers: int, points: int) -> list[int]:
    """``points`` layers spread evenly from 0 to the last (always included); all of them if fewer exist.

    An even subset keeps the depth curve's shape at a fraction of the cost: on 2 CPU cores each point is one
    training run per seed, and 7 points over SmolLM2's 31 hidden states cost 7 instead of 31 runs per seed."""
    if num_layers < 1:
        raise ValueError("the feature set has no layers")
    if points < 2:
        raise ValueError("a layer curve needs at least 2 points (the first and the last layer)")
    if points >= num_layers:
        return list(range(num_layers))
    return sorted({int(round(x)) for x in np.linspace(0, num_layers - 1, points)})


def default_intermediate(num_layers: int) -> tuple[int, int]:
    """The middle half of the depth: from a quarter to three quarters of the last layer's index."""
    last = num_layers - 1
    a, b = last // 4, (3 * last) // 4
    return (a, b) if b > a else (0, last)


def parse_layer_list(text: str | None) -> list[int] | None:
    """``'0,5,10,30'`` or ``'0-30'`` -> layer list; empty / ``auto`` -> None (even subset)."""
    if text is None or str(text).strip().lower() in ("", "auto"):
        return None
    text = str(text).strip()
    try:
        if "-" in text and "," not in text:
            a, b = (int(v) for v in text.split("-", 1))
            if a > b:
                raise ValueError
            return list(range(a, b + 1))
        return sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"cannot read layers {text!r}: use auto, A-B (e.g. 0-30) or a list (e.g. 0,10,20,30)") from None


def parse_range(text: str | None) -> tuple[int, int] | None:
    if text is None or str(text).strip().lower() in ("", "auto"):
        return None
    try:
        a, b = (int(v) for v in str(text).split("-", 1))
    except ValueError:
        raise ValueError(f"cannot read the intermediate range {text!r}: use A-B, e.g. 8-22") from None
    if a > b:
        raise ValueError(f"intermediate range {text!r} runs backwards; use A-B with A <= B")
    return a, b


def resolve(request: StudyRequest, num_layers: int) -> tuple[list[int], tuple[int, int]]:
    """The single-layer points (always with the last layer) and the DFF range, checked against the depth."""
    last = num_layers - 1
    points = even_layers(num_layers, request.layer_points) if request.layers is None else list(request.layers)
    bad = [l for l in points if not 0 <= l <= last]
    if bad:
        raise ValueError(f"layers {bad} are outside 0..{last} (the feature set has {num_layers} layers)")
    points = sorted(set(points) | {last})
    span = request.intermediate or default_intermediate(num_layers)
    if not (0 <= span[0] <= span[1] <= last):
        raise ValueError(f"intermediate range {span[0]}-{span[1]} is outside 0..{last}")
    return points, span


def plan_runs(request: StudyRequest, num_layers: int) -> list[dict]:
    """The run choices of one seed, in the order they are queued: ``{role, strategy, features, layers}``."""
    points, (a, b) = resolve(request, num_layers)
    last = num_layers - 1
    f = request.features
    runs = [{"role": "id", "strategy": "id", "features": None, "layers": None},
            {"role": "replace", "strategy": "replace", "features": f, "layers": str(last)},
            {"role": "init", "strategy": "init", "features": f, "layers": str(last)}]
    if request.captions:
        runs.append({"role": "caption", "strategy": "caption", "features": request.captions, "layers": "all"})
    runs += [{"role": f"gate@{l}", "strategy": "gate", "features": f, "layers": str(l)} for l in points]
    runs.append({"role": "dff all", "strategy": "dff", "features": f, "layers": "all"})
    if (a, b) != (0, last):
        runs.append({"role": f"dff {a}-{b}", "strategy": "dff", "features": f, "layers": f"{a}-{b}"})
    return runs


def sweep_params(request: StudyRequest, num_layers: int) -> dict:
    """The parameters of the one sweep job a study queues (``jobs.handlers.expand_sweep`` reads ``runs``)."""
    if not request.seeds:
        raise ValueError("give at least one seed")
    runs = plan_runs(request, num_layers)
    points, span = resolve(request, num_layers)
    return {"dataset": request.dataset, "features": request.features, "study": request.study,
            "strategies": list(dict.fromkeys(r["strategy"] for r in runs)),
            "layers": list(dict.fromkeys(r["layers"] or "all" for r in runs)),
            "runs": [{k: r[k] for k in ("strategy", "features", "layers")} for r in runs],
            "seeds": [int(s) for s in request.seeds], "settings": request.settings(),
            "plan": {"kind": "study", "captions": request.captions, "layer_points": points,
                     "intermediate": list(span), "num_layers": num_layers},
            **({"engine": "ray", "address": request.address} if request.engine == "ray" else {})}
