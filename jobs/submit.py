"""The one validator and enqueuer for every action — train, sweep, extract and the one-click demo study — used
alike by the CLI, the pages and study plans (``jobs.study``).

Everything that would fail in the worker (unknown dataset or feature set, bad layers, an unknown backbone)
is refused here, before anything is queued, with a message that says what to change.
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from storage.queue import ACTIVE, enqueue, list_jobs
from storage import Database
from storage.datasets import get_dataset
from storage.features import get_feature_set, list_feature_sets
from storage.names import check_name
from storage.runs import list_runs
from storage.views import USABLE_FEATURE_STATUS, demo_dataset_exists, layers_text

MAIN_STRATEGIES = ("id", "replace", "init", "add", "concat", "gate", "dff")
DEMO_STUDY = "demo-study"
# (backbone family, feature set name, inputs): the demo study extracts whichever of these the registry has
DEMO_BACKBONES = (("smollm2", "smollm2-titles", ["title"]), ("efficientnet-lite0", "effnet-frames", ["frames"]))
# train to early stopping: a 20-epoch cap stopped 19 of the 39 runs of the published demo study while still
# improving. Early stopping ends demo runs after ~15-40 epochs; the cap only bounds the worst case.
DEMO_SETTINGS = {"epochs": 200, "patience": 5}
DEMO_SEEDS = [1, 2]
# bounds on what one action may queue (settings: DFF_MAX_SEEDS, DFF_MAX_RUNS): a typo such as 1000000 seeds is
# refused in one line instead of planning millions of runs or queueing thousands of jobs nobody meant
MAX_SEEDS = int(os.environ.get("DFF_MAX_SEEDS", "100"))
MAX_RUNS = int(os.environ.get("DFF_MAX_RUNS", "2000"))


# ------------------------------------------------------------------------------------------ training

def check_train_settings(settings: dict | None) -> dict:
    """The settings a run would train with (request over ``dff_core.train.defaults``), checked: only
    ``TrainConfig`` fields, and their values (loss, negatives, sampler, batch size, DFF layer settings, ...:
    ``TrainConfig.validate``) and the device, resolved here (``cuda`` on a machine
    without CUDA is refused). ``amp bf16`` is refused on a device without bfloat16 (a CPU without AVX512-BF16 or
    AMX) rather than silently ignored."""
    from torch import device as torch_device

    from dff_core.devices import amp_problem
    from dff_core.train.defaults import with_defaults
    from dff_core.train.device import resolve_device
    from dff_core.train.trainer import TrainConfig

    unknown = sorted(set(settings or {}) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown training setting(s) {', '.join(unknown)}")
    full = with_defaults(settings)
    TrainConfig.from_dict(full).validate()
    device = resolve_device(full["device"])
    problem = amp_problem(full.get("amp", "none"), torch_device(device))
    if problem:
        raise ValueError(problem)
    return full


def check_train_params(db: Database, params: dict) -> None:
    """Everything one training run needs, checked: settings and their ranges (``dff_core.limits``), the seed,
    strategy, dataset, feature set and layers, and the memory the run is estimated to need against this
    machine's (refused in one line with the estimate, before it is queued or started)."""
    from dff_core.limits import TRAIN_RANGES, check_ranges
    from dff_core.models.strategies import FEATURE_STRATEGIES, STRATEGIES
    from dff_core.layers import parse_layers

    check_train_settings(params.get("settings"))
    if params.get("seed") is not None:
        check_ranges({"seed": params["seed"]}, TRAIN_RANGES)
    if params["strategy"] not in STRATEGIES:
        raise ValueError(f"unknown strategy {params['strategy']!r}; choose from {', '.join(STRATEGIES)}")
    ds = get_dataset(db, params["dataset"])
    if params["strategy"] in FEATURE_STRATEGIES and not params.get("features"):
        raise ValueError(f"strategy {params['strategy']!r} needs --features (a feature set); only 'id' trains "
                         "without one")
    if params.get("features"):
        fs = get_feature_set(db, params["features"], dataset=ds.id)
        if fs.status not in USABLE_FEATURE_STATUS:
            raise ValueError(f"feature set {fs.name!r} is {fs.status}; wait for its extraction to finish")
        chosen = parse_layers(params.get("layers"), fs.num_layers)
        shape = (len(chosen) if chosen else fs.num_layers, fs.dim)
    check_memory(params.get("settings"), ds.stats, shape if params.get("features") else None)


def check_memory(settings: dict | None, stats: dict, feature_shape: tuple[int, int] | None) -> int:
    """The bytes a run with ``settings`` on a dataset with ``stats`` is estimated to need
    (``dff_core.limits.train_memory_bytes``); ValueError in one line when that exceeds this machine's share."""
    from dff_core.limits import machine_memory_bytes, memory_problem, train_memory_bytes
    from dff_core.train.defaults import with_defaults
    from dff_core.train.device import resolve_device
    from dff_core.train.trainer import TrainConfig

    full = TrainConfig.from_dict(with_defaults(settings, stats.get("users"))).to_dict()  # every field filled
    needed = train_memory_bytes(full, int(stats.get("items") or 0), feature_shape, stats.get("seq_len_mean"))
    problem = memory_problem(needed, machine_memory_bytes(str(resolve_device(full["device"]))))
    if problem:
        raise ValueError(problem)
    return needed


def enqueue_train(db: Database, dataset: str, strategy: str, features: str | None, layers: str | None,
                  settings: dict, seed: int, study: str | None = None) -> int:
    features = features if strategy != "id" else None
    study = check_name("study", study) if (study or "").strip() else None
    params = {"dataset": dataset, "strategy": strategy, "features": features,
              "layers": layers if features else None, "seed": int(seed), "settings": dict(settings),
              "study": study}
    check_train_params(db, params)
    return enqueue(db, "train", params, group=params["study"])


def parse_seeds(text: str | int, *, number_is_count: bool = False) -> list[int]:
    """Seeds as people type them: a list ``1,2,5`` (``;`` works too). A bare number is one seed (``3`` -> [3]:
    ``submit sweep --seeds``, the Train page's sweep), or with ``number_is_count`` a count (``3`` -> [1, 2, 3]:
    ``study --seeds``, the Study page, where "how many seeds" is the question)."""
    text = str(text).strip()
    if number_is_count and text.isdigit():
        check_seed_count(int(text))  # before a list of that many is built
    try:
        if number_is_count and text.isdigit():
            seeds = list(range(1, int(text) + 1))
        else:
            seeds = [int(s) for s in text.replace(";", ",").split(",") if s.strip()]
    except ValueError:
        form = "a count (3) or a comma list (1,2,5)" if number_is_count else "a comma list of integers, e.g. 1,2,3"
        raise ValueError(f"seeds: give {form}, not {text!r}") from None
    if not seeds:
        raise ValueError("give at least one seed")
    check_seed_count(len(seeds))
    return seeds


def check_seed_count(count: int) -> None:
    """Refuse more than ``MAX_SEEDS`` seeds (the setting ``DFF_MAX_SEEDS``), before any list is built."""
    if count > MAX_SEEDS:
        raise ValueError(f"seeds: {count:,} is more than this installation allows ({MAX_SEEDS}); give fewer, "
                         "or raise the bound with DFF_MAX_SEEDS")


def check_run_count(count: int, what: str = "this sweep") -> None:
    """Refuse queueing more than ``MAX_RUNS`` training runs in one action (the setting ``DFF_MAX_RUNS``)."""
    if count > MAX_RUNS:
        raise ValueError(f"{what} would queue {count:,} training runs, more than this installation allows "
                         f"({MAX_RUNS:,}); use fewer seeds, strategies or layer choices, or raise the bound with "
                         "DFF_MAX_RUNS")


def parse_layer_choices(text: str) -> list[str]:
    """``'all; 8-20; 30'`` -> ``['all', '8-20', '30']`` (one training run per choice)."""
    return [c.strip() for c in str(text).split(";") if c.strip()] or ["all"]


def sweep_runs(strategies: list[str], layer_choices: list[str], seeds: list[int]) -> int:
    """How many training runs a sweep expands into (``id`` ignores the layer choices)."""
    from jobs.handlers import expand_sweep

    return len(expand_sweep({"dataset": "", "features": None, "strategies": strategies, "layers": layer_choices,
                             "seeds": seeds, "study": ""}))


def engine_params(engine: str | None = "local", address: str | None = None) -> dict:
    """A sweep's (or study's) engine choice as job parameters ({} for the local engine), checked."""
    engine = engine or "local"
    if address and engine != "ray":
        raise ValueError("--address names a Ray cluster; add --engine ray")
    if engine not in ("local", "ray"):
        raise ValueError(f"unknown engine {engine!r}; local or ray")
    return {"engine": "ray", "address": address or None} if engine == "ray" else {}


def enqueue_sweep(db: Database, dataset: str, features: str | None, strategies: list[str], layer_choices: list[str],
                  seeds: list[int], study: str, settings: dict, *, engine: str = "local",
                  address: str | None = None) -> int:
    from dff_core.limits import TRAIN_RANGES, check_ranges
    from dff_core.models.strategies import STRATEGIES

    if not study or not study.strip():
        raise ValueError("name the study: its runs are grouped under that name on the Compare page")
    study = check_name("study", study)
    if not strategies:
        raise ValueError("pick at least one strategy")
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise ValueError(f"unknown strategies {bad}; choose from {', '.join(STRATEGIES)}")
    if not seeds:
        raise ValueError("give at least one seed")
    check_seed_count(len(seeds))
    check_run_count(sweep_runs(strategies, layer_choices, seeds))
    feature_strats = [s for s in strategies if s != "id"]
    check_train_settings(settings)
    for seed in seeds:
        check_ranges({"seed": seed}, TRAIN_RANGES)
    for layers in layer_choices:
        check_train_params(db, {"dataset": dataset, "features": features if feature_strats else None,
                                "strategy": feature_strats[0] if feature_strats else "id", "layers": layers,
                                "settings": settings})
    params = {"dataset": dataset, "features": features if feature_strats else None, "strategies": list(strategies),
              "layers": list(layer_choices), "seeds": [int(s) for s in seeds], "study": study.strip(),
              "settings": dict(settings), **engine_params(engine, address)}
    return enqueue(db, "sweep", params, group=study.strip())


# ---------------------------------------------------------------------------------------- extraction

def backbone_families() -> tuple[list[dict], str | None]:
    """The backbone registry as plain dicts (key ``family`` always set), or why it cannot be listed.

    Cached per process: listing imports every family's module (torch, transformers: seconds on a first
    call), and what is installed does not change while the dashboard runs."""
    families, problem = _backbone_families()
    return [dict(f) for f in families], problem


@lru_cache(maxsize=1)
def _backbone_families() -> tuple[tuple[dict, ...], str | None]:
    try:
        from dff_core.backbones import list_families
    except Exception as exc:  # every other page works without the registry
        return [], f"the backbone registry (dff_core.backbones) is not available: {type(exc).__name__}: {exc}"
    try:
        families = list(list_families())
    except Exception as exc:
        return [], f"listing backbone families failed: {type(exc).__name__}: {exc}"
    out = []
    for fam in families:
        d = dict(fam)
        d["family"] = str(d.get("family") or d.get("name"))
        d.setdefault("description", "")
        d["inputs"] = list(d.get("inputs") or [])
        d["poolings"] = list(d.get("poolings") or [])
        d["default_inputs"] = list(d.get("default_inputs") or d["inputs"][:1])
        d.setdefault("default_pooling", d["poolings"][0] if d["poolings"] else None)
        d.setdefault("can_caption", False)
        d.setdefault("needs_source", False)
        d.setdefault("available", True)
        out.append(d)
    return tuple(out), None


NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the NVIDIA driver sees


def device_choices() -> list[str]:
    """What the device pickers (Extract, Train, Study) offer: auto, cpu, and each visible CUDA device.

    Torch is imported only where it is loaded already or the NVIDIA driver lists a GPU: on a CPU-only machine a
    first visit of a page must not wait seconds for it (``tests/test_first_visit.py``)."""
    if "torch" not in sys.modules and not (NVIDIA_GPUS.is_dir() and any(NVIDIA_GPUS.iterdir())):
        return ["auto", "cpu"]
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["auto", "cpu"] + [f"cuda:{i}" for i in range(n)]


def backbone_spec(family: str, checkpoint: str | None) -> str:
    checkpoint = (checkpoint or "").strip()
    return f"{family}:{checkpoint}" if checkpoint else family


STORAGE_CHOICES = {"table": "duckdb", "parquet": "parquet"}  # CLI word -> feature_sets.storage


def check_compute(backbone: str, device: str | None, compute_dtype: str | None, quantize: str | None,
                  engine: str = "local") -> dict:
    """The device/precision choices of an extraction, validated for this machine and backbone family.
    Returns them as given (``auto`` is resolved when the job runs, and stored with the feature set)."""
    from dff_core.backbones import family_class, parse_spec, resolve_precision
    from dff_core.devices import device_name, resolve_device

    device = (device or "auto").strip().lower()
    compute_dtype, quantize = compute_dtype or "auto", quantize or "none"
    cls = family_class(parse_spec(backbone)[0])
    if engine == "ray":
        # replicas sit on the cluster's GPUs (or CPUs); only cpu can be forced from here
        if device not in ("auto", "cpu"):
            raise ValueError(f"--engine ray places replicas on the cluster's GPUs itself; use --device auto "
                             f"(or cpu to keep them on CPUs), not {device!r}")
        resolve_precision(cls, "cpu" if device == "cpu" or quantize == "int8" else "cuda:0", compute_dtype,
                          quantize)
    else:
        resolve_precision(cls, device_name(resolve_device(device)), compute_dtype, quantize)
    return {"device": device, "compute_dtype": compute_dtype, "quantize": quantize}


def extract_job_params(db: Database, dataset: str, backbone: str, name: str, inputs: list[str] | None = None,
                       num_frames: int = 8, pooling: str | None = None, batch_size: int | None = None,
                       dtype: str = "float16",
                       caption: bool = False, frame_size: int = 224, text_encoder: str = "minilm",
                       device: str = "auto", compute_dtype: str = "auto", quantize: str = "none",
                       storage: str | None = "table", engine: str | None = "local", address: str | None = None) -> dict:
    """Validated keyword arguments for ``jobs.workflows.run_extraction`` (checked before anything is queued or
    run): ``extract``, ``submit extract`` and the Extract page. ``inputs``, ``pooling`` and ``batch_size`` None:
    the backbone's defaults."""
    from dff_core.backbones import family_info

    if not name or not name.strip():
        raise ValueError("name the feature set")
    name = check_name("feature set", name)
    if inputs is not None and not inputs:
        raise ValueError("pick at least one input (frames, title or cover)")
    get_dataset(db, dataset)
    info = family_info(backbone)
    inputs = list(inputs) if inputs else list(info["default_inputs"])
    bad = [i for i in inputs if i not in info["inputs"]]
    if bad:
        raise ValueError(f"backbone {backbone!r} takes {', '.join(info['inputs'])}; not {', '.join(bad)}")
    pooling = pooling or info["default_pooling"]
    if pooling not in info["poolings"]:
        raise ValueError(f"backbone {backbone!r} pools by {', '.join(info['poolings'])}; not {pooling!r}")
    if caption and not info.get("can_caption"):
        raise ValueError(f"backbone {backbone!r} cannot write captions; use an LVLM family")
    batch_size = info["default_batch_size"] if batch_size is None else batch_size
    from dff_core.limits import EXTRACT_RANGES, check_ranges

    check_ranges({"num_frames": num_frames, "frame_size": frame_size, "batch_size": batch_size}, EXTRACT_RANGES)
    params = {"dataset": dataset, "backbone": backbone, "name": name.strip(), "inputs": inputs,
              "num_frames": int(num_frames), "frame_size": int(frame_size), "pooling": pooling,
              "batch_size": int(batch_size), "dtype": dtype, "caption": bool(caption), "text_encoder": text_encoder}
    # scale-out choices are passed only when asked for, so job params of the default path stay as they were
    stored_as = STORAGE_CHOICES[storage or "table"]
    engine = engine or "local"
    if engine == "ray" and caption:
        raise ValueError("the caption route runs on the local engine only; leave out --engine ray")
    engine_params(engine, address)
    if engine == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ValueError("--engine ray needs Ray: pip install -r requirements-ray.txt")
    params.update(check_compute(backbone, device, compute_dtype, quantize, engine))
    extra = {"storage": stored_as if stored_as != "duckdb" else None, "engine": engine if engine != "local" else None,
             "address": address}
    return {**params, **{k: v for k, v in extra.items() if v}}


def enqueue_extract(db: Database, **kwargs) -> int:
    params = extract_job_params(db, **kwargs)
    existing = [fs for fs in list_feature_sets(db, params["dataset"]) if fs.name == params["name"]]
    if existing and existing[0].status in USABLE_FEATURE_STATUS:
        raise ValueError(f"feature set {params['name']!r} already exists for {params['dataset']!r}; pick another name")
    return enqueue(db, "extract", params)


# ---------------------------------------------------------------------------------------- demo study

def demo_study_plan(db: Database) -> tuple[list[tuple[str, dict]], list[str]]:
    """What "run the demo study" queues (skipping what is stored or queued) and notes on what it leaves out.

    The worker runs jobs in id order: the demo dataset, the extractions, then sweeps whose train jobs are
    created when the sweep itself runs, i.e. after its feature set exists.
    """
    from jobs.datasets import DEMO_NAME

    active = [j for j in list_jobs(db) if j.status in ACTIVE]
    plan: list[tuple[str, dict]] = []
    notes: list[str] = []
    have_demo = demo_dataset_exists(db, DEMO_NAME)
    if not have_demo and not any(j.kind == "demo" for j in active):
        plan.append(("demo", {}))
    families, problem = backbone_families()
    by_family = {f["family"]: f for f in families}
    stored = {fs.name: fs for fs in list_feature_sets(db, DEMO_NAME)} if have_demo else {}
    feature_sets = []
    if problem:
        notes.append(f"No backbone can run here ({problem}), so the demo study trains the ID-only baseline.")
    for family, name, inputs in DEMO_BACKBONES:
        fam = by_family.get(family)
        if fam is None or not fam.get("available", True):
            if not problem:
                notes.append(f"{family} is not available here, so its demo features are skipped.")
            continue
        inputs = [i for i in inputs if i in fam["inputs"]] or fam["default_inputs"]
        feature_sets.append(name)
        fs = stored.get(name)
        extracting = any(j.kind == "extract" and (j.params or {}).get("name") == name for j in active)
        if (fs is None or fs.status not in USABLE_FEATURE_STATUS) and not extracting:
            plan.append(("extract", {"dataset": DEMO_NAME, "backbone": family, "name": name, "inputs": inputs,
                                     "num_frames": 4, "frame_size": int(fam.get("frame_size") or 224),
                                     "pooling": fam["default_pooling"], "batch_size": 8, "dtype": "float16",
                                     "caption": False, "text_encoder": "minilm"}))
    already = (any(j.kind == "sweep" and j.group_name == DEMO_STUDY for j in active)
               or bool(list_runs(db, study=DEMO_STUDY)))
    if not already:  # one sweep, seed by seed: the ID baseline plus every strategy on every demo feature set
        runs = [{"strategy": "id"}] + [{"strategy": s, "features": name, "layers": "all"}
                                       for name in feature_sets for s in MAIN_STRATEGIES if s != "id"]
        plan.append(("sweep", {"dataset": DEMO_NAME, "features": feature_sets[0] if feature_sets else None,
                               "strategies": sorted({r["strategy"] for r in runs}, key=MAIN_STRATEGIES.index),
                               "layers": ["all"], "runs": runs, "seeds": list(DEMO_SEEDS), "study": DEMO_STUDY,
                               "settings": dict(DEMO_SETTINGS)}))
    return plan, notes


def enqueue_demo_dataset(db: Database) -> int | None:
    """Queue building the demo dataset alone (Home's *Build the demo dataset*; ``python -m dff_core demo`` builds
    it in the foreground): the job id, or None when it is stored or already queued."""
    from jobs.datasets import DEMO_NAME

    if demo_dataset_exists(db, DEMO_NAME) or any(j.kind == "demo" and j.status in ACTIVE for j in list_jobs(db)):
        return None
    return enqueue(db, "demo", {})


def enqueue_demo_study(db: Database) -> list[int]:
    plan, _ = demo_study_plan(db)
    return [enqueue(db, kind, params, group=DEMO_STUDY if kind != "demo" else None) for kind, params in plan]


def layer_spec(mode: str, num_layers: int, span: tuple[int, int] | None = None,
               picked: list[int] | None = None) -> str:
    """The layer string a train job takes (``all``, ``A-B``, ``i,j,k``) from the layer picker's state."""
    if mode == "all":
        return "all"
    if mode == "range":
        a, b = span if span else (0, num_layers - 1)
        return layers_text(list(range(a, b + 1)), num_layers)
    if not picked:
        raise ValueError("pick at least one layer")
    return ",".join(str(x) for x in sorted({int(p) for p in picked}))
