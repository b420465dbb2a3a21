"""Training: SASRec + item encoder, all-position softmax CE, early stopping, checkpoint/resume.

The names load on first use (PEP 562): importing ``dff_core.train.defaults`` (the pages and the CLI do, to
list choices) must not load torch through this package's ``__init__``."""
from __future__ import annotations

import importlib

_WHERE = {name: "trainer" for name in ("TrainConfig", "TrainResult", "TrainingBatches", "build_model", "train")}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
