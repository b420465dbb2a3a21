"""One training run's settings, built the same way for both engines: the local one
(``jobs.workflows.run_training``) and the Ray sweep driver (``jobs.ray_sweep``).

Contract: ``plan_run`` turns a request (dataset, strategy, feature set, layer choice, settings, seed) into a
``RunPlan``: the ``TrainConfig`` to train with, the feature set record and the chosen layer ids; and
``RunPlan.config`` gives the dict a run record stores. In order:

* **settings**: the request over ``TRAIN_DEFAULTS`` and the dataset-size rule (``with_defaults``); a resumed run
  (``stored``: its config) keeps its own settings minus the device-like ones (``jobs.resume``);
* **device**: ``device=None`` resolves it here (the local engine trains here): ``auto`` becomes the device
  and ``amp`` the precision it runs in, so the stored config says where and how it trained. A given
  ``device`` (Ray: ``cuda`` or ``cpu`` for the cluster's workers) is stored as given, ``amp`` as requested: it
  is resolved on the machine that trains;
* **feature set and layers**: the set by name (within the dataset) or id; no layer choice means all layers for
  a feature strategy;
* **probe scores**: DFF with ``layer_init="probe"`` starts from the feature set's layer usefulness
  (``jobs.probes.cached_layer_usefulness``, its ``lift``) for exactly the chosen layers, unless the request
  gives ``layer_scores``.

Why one function: the two engines used to build their runs separately and drifted (DFF with
``layer_init=probe`` raised under Ray, the engines' stored configs differed); a run must mean the same
thing whichever engine trained it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dff_core.layers import parse_layers
from dff_core.train.defaults import with_defaults
from storage import Database
from storage.datasets import DatasetRecord
from storage.features import FeatureSetRecord, get_feature_set

if TYPE_CHECKING:  # the type only: importing the trainer loads torch, which planning defers to its first call
    from dff_core.train.trainer import TrainConfig


@dataclass
class RunPlan:
    """What a run trains with: ``cfg`` (its ``layers`` is None: the feature tensor handed to the trainer holds
    exactly ``layer_ids``, in order), the feature set (None for ``id``) and the stored layer numbers."""
    cfg: "TrainConfig"
    fs: FeatureSetRecord | None
    layer_ids: list[int] | None

    def config(self, missing: int, **extra) -> dict:
        """The run record's config: every ``TrainConfig`` field, the layers, feature set, backbone, items
        without vectors (``missing``) and ``extra`` (``engine``, Ray's ``sweep_key``)."""
        fs = self.fs
        return {**self.cfg.to_dict(), "layers": self.layer_ids, "feature_set": fs.name if fs else None,
                "backbone": fs.backbone if fs else None, "items_without_features": missing, **extra}


def feature_set_of(db: Database, ds: DatasetRecord, features: str | int | FeatureSetRecord) -> FeatureSetRecord:
    """A feature set by name within ``ds``, by id, or as already read."""
    if isinstance(features, FeatureSetRecord):
        return features
    return get_feature_set(db, features, dataset=ds.id if not str(features).isdigit() else None)


def plan_run(db: Database, ds: DatasetRecord, strategy: str, *,
             features: str | int | FeatureSetRecord | None = None, layers: str | list[int] | None = None,
             settings: dict | None = None, seed: int = 42, stored: dict | None = None,
             device: str | None = None) -> RunPlan:
    """The run's settings, feature set and layers (module docstring); raises ValueError on a bad request."""
    from dff_core.models.item_encoders import FEATURE_STRATEGIES
    from dff_core.train.trainer import TrainConfig

    if strategy in FEATURE_STRATEGIES and features is None:
        raise ValueError(f"strategy {strategy!r} needs a feature set (--features NAME); only 'id' trains without")
    fs = feature_set_of(db, ds, features) if features is not None else None
    layer_ids = parse_layers(layers, fs.num_layers) if fs is not None else None
    if fs is not None and strategy in FEATURE_STRATEGIES and layer_ids is None:
        layer_ids = list(range(fs.num_layers))
    if stored is not None:  # a resumed run keeps the settings it started with, all but the device-like ones
        from jobs.resume import resumed_settings

        settings = resumed_settings(stored, settings, TrainConfig.__dataclass_fields__)
    cfg = TrainConfig(strategy=strategy, layers=None, seed=int(seed), **with_defaults(settings, ds.stats.get("users")))
    if device is None:
        from torch import device as torch_device

        from dff_core.devices import resolve_amp
        from dff_core.train.device import resolve_device

        cfg.device = resolve_device(cfg.device)
        cfg.amp = resolve_amp(cfg.amp, torch_device(cfg.device))
    else:
        cfg.device = device
    if strategy == "dff" and cfg.layer_init == "probe" and cfg.layer_scores is None and fs is not None:
        from jobs.probes import cached_layer_usefulness

        lift = cached_layer_usefulness(db, fs).set_index("layer")["lift"]
        cfg.layer_scores = [float(lift[layer]) for layer in layer_ids]
    return RunPlan(cfg=cfg, fs=fs, layer_ids=layer_ids)
