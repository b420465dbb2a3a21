"""The strategy names (how item content enters SASRec), without torch: the pages, the CLI and job validation
list them on every request, and importing the item encoders would load torch for a tuple of strings."""
from __future__ import annotations

STRATEGIES = ("id", "replace", "init", "caption", "add", "concat", "gate", "dff")
FEATURE_STRATEGIES = tuple(s for s in STRATEGIES if s != "id")
GATED_STRATEGIES = ("caption", "gate", "dff")
