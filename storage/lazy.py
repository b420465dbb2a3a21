"""pandas, imported on first use. Why: the quick reads of the CLI (``runs``, ``jobs``, ``datasets``, ``features``)
touch no data frame, and pandas' import alone is ~0.3 s of their ~1 s on a 2-core machine. Contract: ``pd.X``
is ``pandas.X`` (the module is imported at the first attribute read, then cached by Python's import system)."""
from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    def __init__(self, name: str):
        self._name = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str):
        return getattr(self._module(), attr)


pd = LazyModule("pandas")
