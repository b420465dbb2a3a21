"""The range of every number a person sets for a run or an extraction, checked in one place before anything is
queued or trained (``TrainConfig.validate``, ``jobs.submit``), and the memory a training run needs.

Why: a value that only fails in the worker (``--lr nan``, ``--threads -1``, ``--seed 1e20`` that the database
cannot store, ``--hidden 100000000`` that asks for terabytes) stores a failed job or run and prints a traceback
instead of one line. The bounds are wide, far beyond what the paper or the benchmarks use, so they refuse
typos, not experiments. Torch-free: the pages and the CLI check without loading it.
"""
from __future__ import annotations

import math
import os

SEED_MAX = 2**31 - 1  # the database stores seeds as 32-bit integers; numpy refuses negative seeds

# setting -> (lowest, highest, integer?); None values (num_threads unset) are not checked
TRAIN_RANGES: dict[str, tuple[float, float, bool]] = {
    "epochs": (1, 100_000, True), "batch_size": (1, 65_536, True), "lr": (0.0, 10.0, False),
    "lr_decay": (0.0, 1.0, False), "weight_decay": (0.0, 10.0, False), "patience": (0, 100_000, True), "seed": (0, SEED_MAX, True),
    "eval_every": (1, 100_000, True), "max_len": (1, 4_096, True), "hidden": (1, 4_096, True),
    "blocks": (1, 64, True), "heads": (1, 64, True), "dropout": (0.0, 0.99, False),
    "cold_threshold": (0, 1_000_000, True), "eval_batch_size": (1, 65_536, True),
    "log_every": (1, 1_000_000_000, True), "num_threads": (1, 1_024, True), "layer_lr_mult": (0.0, 1_000.0, False),
    "feature_lr_mult": (0.0, 1_000.0, False),
    "negatives": (1, 100_000, True), "gbce_t": (0.0, 1.0, False),
}
EXTRACT_RANGES: dict[str, tuple[float, float, bool]] = {
    "num_frames": (1, 256, True), "frame_size": (16, 2_048, True), "batch_size": (1, 4_096, True),
}
FLAGS = {"num_frames": "frames", "num_threads": "threads"}  # settings whose command-line option reads otherwise
# the share of the machine's memory (RAM, or the GPU's for a CUDA device) a run may be estimated to need
MEMORY_FRACTION = float(os.environ.get("DFF_MEMORY_FRACTION", "0.8"))


def range_problem(name: str, value: object, ranges: dict[str, tuple[float, float, bool]]) -> str | None:
    """Why ``value`` is out of ``name``'s range, as one line, or None (also for names without a range)."""
    if name not in ranges or value is None:
        return None
    lo, hi, integer = ranges[name]
    flag = FLAGS.get(name, name)
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy scalars, numeric strings from a stored config
        except (TypeError, ValueError):
            return f"{flag} must be {kind} from {_text(lo)} to {_text(hi)}, not {value!r}"
    if not math.isfinite(value) or (integer and value != int(value)) or not lo <= value <= hi:
        return f"{flag} must be {kind} from {_text(lo)} to {_text(hi)}, not {_text(value)}"
    return None


def _text(x: float) -> str:
    """A number as typed: whole numbers in full (2147483647, not 2.14748e+09), others short."""
    return str(int(x)) if isinstance(x, int) or (math.isfinite(x) and x == int(x) and abs(x) < 1e16) else f"{x:g}"


def check_ranges(values: dict, ranges: dict[str, tuple[float, float, bool]]) -> None:
    """ValueError in one line for the first value of ``values`` outside its range."""
    for name, value in values.items():
        problem = range_problem(name, value, ranges)
        if problem:
            raise ValueError(problem)
    hidden, heads = values.get("hidden"), values.get("heads")
    if ranges is TRAIN_RANGES and hidden and heads and int(hidden) % int(heads):
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")


def train_memory_bytes(settings: dict, num_items: int, feature_shape: tuple[int, int] | None = None,
                       mean_seq_len: float | None = None) -> int:
    """An upper estimate of the memory one training run needs, in bytes: the model and its optimiser state, the
    feature buffer, one batch's activations, and the loss's largest tensors (with their gradients).

    ``settings`` are full training settings (defaults filled in); ``feature_shape`` is (layers used, dim) of the
    feature set, None for ID-only. The loss terms dominate the bad cases: the sampled and gBCE losses gather
    ``batch x negatives x hidden`` item vectors and score ``batch x positions x negatives`` logits; the full
    softmax holds one ``[target positions, items]`` block per step (on a CPU the kept exponentials, on a GPU the
    logits and their gradient). A batch's target positions are at most ``batch x max_len``; with the dataset's
    mean sequence length (``mean_seq_len``, from its stats) they are taken as twice the batch's expected share,
    ``2 x batch x mean targets per user`` (batches hold about equal shares of the targets), capped by that maximum.
    """
    f = 4  # float32 bytes
    b, t, d = int(settings["batch_size"]), int(settings["max_len"]), int(settings["hidden"])
    blocks, heads = int(settings.get("blocks", 2)), int(settings.get("heads", 1))
    items = int(num_items) + 1
    layers, dim = feature_shape or (0, 0)
    params = items * d + t * d + blocks * 12 * d * d + (dim * d if dim else 0)
    model = 4 * params * f                                       # weights, gradients, two Adam moments
    features = items * layers * dim * f
    activations = blocks * b * t * (16 * d + 2 * heads * t) * f   # kept for backward
    if settings.get("loss", "full") in ("sampled", "gbce", "logq"):
        n = int(settings.get("negatives", 256))
        loss = 2 * (b * n * d + b * t * n) * f                    # gathered vectors and logits, and their gradients
    else:
        positions = b * t
        if mean_seq_len:   # training targets per user: the sequence minus validation, test and the first item
            positions = min(positions, int(2 * b * max(1.0, min(float(mean_seq_len) - 3, t))) + 1)
        loss = 2 * positions * items * f
    return int(model + features + activations + loss)


def machine_memory_bytes(device: str) -> int | None:
    """What a run on ``device`` can use: the GPU's memory for ``cuda``, else the machine's RAM; None if unknown.
    (Only a CUDA device imports torch, which is loaded then anyway.)"""
    if str(device).startswith("cuda"):
        import torch

        index = int(str(device).split(":")[1]) if ":" in str(device) else 0
        return int(torch.cuda.get_device_properties(index).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_problem(needed: int, available: int | None, fraction: float = MEMORY_FRACTION) -> str | None:
    """One line when ``needed`` bytes exceed ``fraction`` of ``available``, else None."""
    if available is None or needed <= fraction * available:
        return None
    return (f"this run would need about {gib(needed)} of memory, more than {fraction:.0%} of this machine's "
            f"{gib(available)}; lower --negatives, --batch-size, --hidden or --max-len "
            "(or raise the share with DFF_MEMORY_FRACTION)")


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GB"
