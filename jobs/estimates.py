"""What a batch of training runs will cost, from what this database has measured (``dff_core.estimates``): the
one place the Train and Study pages and ``study --dry-run`` / ``submit sweep`` get their estimate from."""
from __future__ import annotations

from dff_core.estimates import training_estimate
from storage.db import Database
from storage import views


RECENT_RUNS = 3  # seconds per epoch: the median of this many newest finished runs of a kind


def training_cost(db: Database, dataset: str, strategies: list[str], settings: dict | None = None,
                  runs: list[dict] | None = None, side_by_side: int | None = None) -> dict:
    """``dff_core.estimates.training_estimate`` for ``strategies`` (one entry per run) on ``dataset``, with the
    epochs and seconds per epoch of its earlier finished runs, and the amp and cap these runs would use.

    ``runs`` (parallel to ``strategies``: ``{"features", "layers"}`` each, as a sweep or study plans them) prices
    each fusion run by its own feature shape, so a single-layer gate is not charged DFF's 31-layer mix.

    Seconds per epoch: the median of the :data:`RECENT_RUNS` newest finished runs of each kind (ID-only, fusion)
    with the same amp, batch and loss. Expected epochs: those of the dataset's early-stopped runs trained with the
    same batch size, learning rate, lr decay and loss, and for fusion runs the same content-side rate (how fast a
    run converges depends on them, not on amp or threads), of the run's own strategy where it has some, else of any strategy; else of any of its early-stopped
    runs, else the cost model's default.

    ``side_by_side``: training runs the worker trains at once (default ``jobs.worker.train_slots()``); a stored
    run that trained beside others counts with its alone-seconds (``dff_core.estimates.alone_epoch_seconds``)."""
    from dff_core.estimates import alone_epoch_seconds
    from dff_core.train.defaults import with_defaults
    from jobs.resume import BEFORE_IT_EXISTED
    from jobs.worker import train_slots
    from storage.datasets import get_dataset

    ds = get_dataset(db, dataset)
    stats = ds.stats
    full = with_defaults(settings, stats.get("users"))
    device = str(full.get("device") or "auto")
    amp = _amp(full.get("amp", "none"), device)
    on_cpu = _on_cpu(device)
    buffer = _buffer(full.get("feature_buffer"))
    users, interactions = int(stats.get("users", 0)), int(stats.get("interactions", 0))
    per_epoch: dict[str, list[float]] = {"id": [], "features": []}
    measured_layers: list[int] = []
    alike: list[int] = []   # epochs of early-stopped runs that learned as these will: same batch, lr, decay, loss
    alike_by: dict[str, list[int]] = {}   # the same, per strategy

    def same(config: dict, keys: tuple[str, ...]) -> bool:
        """Whether a stored run's config (a setting it lacks: what runs trained with before it existed) matches."""
        return all(config.get(k, BEFORE_IT_EXISTED.get(k)) == full.get(k) for k in keys)

    for r in views.finished_run_epochs(db, ds.id):
        if (same(r["config"], ("batch_size", "lr", "lr_decay", "loss"))
                and (r["strategy"] in ("id", "init") or same(r["config"], ("feature_lr_mult",)))
                and r["ending"] == "early_stopped"):
            alike.append(r["epochs"])
            alike_by.setdefault(r["strategy"], []).append(r["epochs"])
        if (same(r["config"], ("batch_size", "loss")) and r["config"].get("amp", BEFORE_IT_EXISTED["amp"]) == amp
                and (r["strategy"] != "dff" or _buffer(r["config"].get("feature_buffer")) == buffer)):
            per_epoch["id" if r["strategy"] == "id" else "features"].append(
                alone_epoch_seconds(r["seconds_per_epoch"], r.get("side_by_side", 1), on_cpu))
            if r["strategy"] != "id":
                measured_layers.append(len(r["layers"]) if r.get("layers") else None)   # None: all of its set
    # the newest runs of each kind: a faster release or another machine makes older epochs stale (runs come by id)
    per_epoch = {k: v[-RECENT_RUNS:] for k, v in per_epoch.items()}
    measured_layers = measured_layers[-RECENT_RUNS:]
    counts, dim = _layer_counts(db, dataset, strategies, runs)
    measured_layers = [n if n else max(counts or [1]) for n in measured_layers]
    return training_estimate(strategies, users=users, items=int(stats.get("items", 0)),
                             targets=max(0, interactions - 3 * users), amp=amp,  # all but 2 held out + 1 first
                             batch_size=int(full.get("batch_size") or 1024),
                             epochs_needed=alike or views.epochs_needed(db, dataset), epoch_seconds=per_epoch,
                             cap=full.get("epochs"), layer_counts=counts, dim=dim,
                             measured_layers=measured_layers or None, epochs_by_strategy=alike_by,
                             side_by_side=train_slots() if side_by_side is None else side_by_side, on_cpu=on_cpu,
                             feature_buffer=buffer)


def _layer_counts(db: Database, dataset: str, strategies: list[str],
                  runs: list[dict] | None) -> tuple[list[int] | None, int | None]:
    """Each run's number of layers (0 for ID-only) and the fusion runs' feature width, or ``(None, None)`` when
    ``runs`` is not given or a feature set cannot be read (the estimate then prices every fusion run alike)."""
    from dff_core.layers import parse_layers
    from storage.features import get_feature_set

    if not runs or len(runs) != len(strategies):
        return None, None
    sets, counts, dim = {}, [], None
    try:
        for strategy, run in zip(strategies, runs):
            if strategy == "id" or not run.get("features"):
                counts.append(0)
                continue
            name = run["features"]
            fs = sets[name] = sets.get(name) or get_feature_set(db, name, dataset=dataset)
            chosen = parse_layers(run.get("layers"), fs.num_layers)
            counts.append(len(chosen) if chosen else fs.num_layers)
            dim = max(dim or 0, int(fs.dim))
    except (LookupError, ValueError):
        return None, None
    return counts, dim





def _amp(amp: str, device: str) -> str:
    """``dff_core.devices.resolve_amp`` without torch: ``auto`` is bf16 only when the run lands on a CPU with native
    bfloat16 (``auto`` lands on a GPU where the pickers list one: ``jobs.submit.device_choices``)."""
    from dff_core.cpu import cpu_has_bf16

    if amp not in ("", "auto"):
        return amp
    return "bf16" if _on_cpu(device) and cpu_has_bf16() else "none"


def _buffer(feature_buffer: str | None) -> str:
    """DFF's buffer as ``dff_core.train.trainer.feature_dtype`` makes it: ``"int8"`` where asked for, else
    ``"float"`` (a run from before the setting existed, too)."""
    return "int8" if feature_buffer == "int8" else "float"


def _on_cpu(device: str) -> bool:
    """Whether a run with this device setting lands on the CPU (``auto`` lands on a GPU where the pickers list one:
    ``jobs.submit.device_choices``)."""
    from jobs.submit import device_choices

    return device == "cpu" or (device == "auto" and len(device_choices()) <= 2)


def sweep_cost(db: Database, dataset: str, strategies: list[str], layer_choices: list[str], seeds: list[int],
               settings: dict | None = None, features: str | None = None, side_by_side: int | None = None) -> dict:
    """:func:`training_cost` of the runs a sweep expands into (``jobs.handlers.expand_sweep``)."""
    from jobs.handlers import expand_sweep

    runs = expand_sweep({"dataset": dataset, "features": features, "strategies": strategies,
                         "layers": layer_choices, "seeds": seeds, "study": ""})
    return training_cost(db, dataset, [r["strategy"] for r in runs], settings, runs=runs, side_by_side=side_by_side)
