"""SASRec and its pluggable item encoders (ID, frozen-feature and fusion strategies, DFF).

The names load on first use (PEP 562): importing a torch-free submodule such as ``dff_core.models.strategies``
must not load torch through this package's ``__init__``."""
from __future__ import annotations

import importlib

_WHERE = {"SASRec": "sasrec", "SASRecConfig": "sasrec", "ItemEncoder": "item_encoders",
          "build_item_encoder": "item_encoders", "prepare_features": "item_encoders",
          "STRATEGIES": "strategies", "FEATURE_STRATEGIES": "strategies", "GATED_STRATEGIES": "strategies"}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
