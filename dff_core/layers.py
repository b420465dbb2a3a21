"""Layer choices as people write them (``all``, ``A-B``, ``i,j,k``), read into the stored tensor's layer
indices: the one parser the CLI, the pages, job requests and neighbour sources share. (Writing a choice back
as text is ``storage.views.layers_text``: a read model's column, so it lives with the read models.)"""
from __future__ import annotations

import re


def parse_layers(spec: str | list[int] | None, num_layers: int) -> list[int] | None:
    """``all`` | ``A-B`` (inclusive) | ``i,j,k`` | a list; negative indices count from the end.

    Returns sorted unique layer indices into the stored tensor (0 = embedding output), or None for all."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return None
    if isinstance(spec, str):
        spec = spec.strip()
        span = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", spec)
        try:
            if span:
                a, b = (int(v) + num_layers if int(v) < 0 else int(v) for v in span.groups())
                if a > b:
                    raise ValueError
                values = list(range(a, b + 1))
            else:
                values = [int(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"cannot read layers {spec!r}: use all, A-B (e.g. 8-20) or a list (e.g. 4,12,30)") from None
    else:
        values = [int(v) for v in spec]
    values = [v + num_layers if v < 0 else v for v in values]
    bad = [v for v in values if not 0 <= v < num_layers]
    if bad or not values:
        raise ValueError(f"layers {bad or values} are outside 0..{num_layers - 1} (the feature set has {num_layers} layers)")
    return sorted(set(values))
