"""What a batch of training runs will cost, from what this database has measured (``dff_core.estimates``): the
one place the Train and Study pages and ``study --dry-run`` / ``submit sweep`` get their estimate from."""
from __future__ import annotations

from dff_core.estimates import training_estimate
from storage.db import Database
from storage import views


def training_cost(db: Database, dataset: str, strategies: list[str], settings: dict | None = None) -> dict:
    """``dff_core.estimates.training_estimate`` for ``strategies`` (one entry per run) on ``dataset``, with the
    epochs and seconds per epoch of its earlier finished runs, and the amp and cap these runs would use."""
    from dff_core.train.defaults import with_defaults
    from storage.datasets import get_dataset

    ds = get_dataset(db, dataset)
    stats = ds.stats
    full = with_defaults(settings, stats.get("users"))
    amp = _amp(full.get("amp", "none"), str(full.get("device") or "auto"))
    users, interactions = int(stats.get("users", 0)), int(stats.get("interactions", 0))
    per_epoch: dict[str, list[float]] = {"id": [], "features": []}
    for r in views.finished_run_epochs(db, ds.id):
        if (r["config"].get("amp", "none") == amp and r["config"].get("batch_size") == full.get("batch_size")
                and r["config"].get("loss", "full") == full.get("loss", "full")):
            per_epoch["id" if r["strategy"] == "id" else "features"].append(r["seconds_per_epoch"])
    return training_estimate(strategies, users=users, items=int(stats.get("items", 0)),
                             targets=max(0, interactions - 3 * users), amp=amp,  # all but 2 held out + 1 first
                             batch_size=int(full.get("batch_size") or 1024),
                             epochs_needed=views.epochs_needed(db, dataset), epoch_seconds=per_epoch,
                             cap=full.get("epochs"))





def _amp(amp: str, device: str) -> str:
    """``dff_core.devices.resolve_amp`` without torch: ``auto`` is bf16 only when the run lands on a CPU with native
    bfloat16 (``auto`` lands on a GPU where the pickers list one: ``jobs.submit.device_choices``)."""
    from dff_core.cpu import cpu_has_bf16
    from jobs.submit import device_choices

    if amp not in ("", "auto"):
        return amp
    on_cpu = device == "cpu" or (device == "auto" and len(device_choices()) <= 2)
    return "bf16" if on_cpu and cpu_has_bf16() else "none"


def sweep_cost(db: Database, dataset: str, strategies: list[str], layer_choices: list[str], seeds: list[int],
               settings: dict | None = None) -> dict:
    """:func:`training_cost` of the runs a sweep expands into (``jobs.handlers.expand_sweep``)."""
    from jobs.handlers import expand_sweep

    runs = expand_sweep({"dataset": dataset, "features": None, "strategies": strategies, "layers": layer_choices,
                         "seeds": seeds, "study": ""})
    return training_cost(db, dataset, [r["strategy"] for r in runs], settings)
