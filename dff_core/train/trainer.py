"""Training loop for SASRec with any item-encoder strategy: early stopping, checkpoints, resume.

Objective (SASRec's): for every training prefix ``s = train[u]`` the input is ``s[:-1]`` and the
target ``s[1:]`` at every non-padded position (the last ``max_len`` positions), with softmax
cross-entropy over ALL items (``loss="full"``), over the target and ``negatives`` sampled items
(``loss="sampled"``: the positive is always logit 0; negatives are drawn per user, ``uniform`` or
``in-batch``, never from the user's training sequence, see :mod:`dff_core.train.negatives`; no logQ
correction), gSASRec's gBCE over the same negatives (``loss="gbce"``, calibration ``gbce_t``), or a softmax over
the target and ``negatives`` items shared by the batch with the logQ correction (``loss="logq"``); the losses
are in :mod:`dff_core.train.losses`. Validation and test items are never trained on. Evaluation always ranks
ALL items. AdamW. The item table is computed once per step. Batches are random users or users of similar length
(``batching``, :mod:`dff_core.train.batching`); either way every training target is trained once per epoch. After every ``eval_every`` epochs the validation metric ``cfg.metric`` is
computed (protocol: :mod:`dff_core.eval.metrics`); the best state is kept, each evaluation without improvement
multiplies the learning rate by ``lr_decay`` (1: constant), training stops after ``patience`` such evaluations, and the final validation and test metrics are computed
with the best state.

Reproducibility: the model is built after ``torch.manual_seed(seed)``; batches are shuffled and negatives
drawn with dedicated CPU generators (both saved in checkpoints); same seed -> identical results on CPU (on CUDA some kernels are not
deterministic).

Checkpoints (``checkpoint_dir / "checkpoint.pt"``, written atomically: temp file + ``os.replace``)
hold the model, optimizer, RNG states, position in the epoch, history, best state and patience
counter; they are written after every epoch and on cancel (mid-epoch). ``train`` resumes from an
existing checkpoint, and an uninterrupted run and an interrupted + resumed run give identical results.
Frozen features are not stored in checkpoints: pass the same ``features`` again when resuming.
Checkpoints are written from CPU copies and loaded with ``map_location="cpu"``, then moved to the run's
device, so a run started on CUDA resumes on CPU and back (``device``, ``amp`` and ``feature_buffer`` may differ on
resume: none of them is in the checkpoint).

Device: ``cfg.device`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (:func:`dff_core.train.device.resolve_device`).
``amp="bf16"`` runs the forward pass and the loss under ``torch.autocast(bfloat16)`` on CUDA. On a CPU with
native bfloat16 (:func:`dff_core.devices.cpu_has_bf16`) it multiplies the full softmax's two big products in
bfloat16 (float32 accumulation, exponentials and sums) and keeps the fusion strategies' feature buffer in
bfloat16; the transformer, the optimizer and evaluation stay float32 (scores in bfloat16 would tie). Elsewhere
it is refused by callers (``jobs.submit``) and ignored here. ``feature_buffer`` picks DFF's layer stack:
``int8`` (a scale per layer and dimension: half bfloat16's bytes, the two reads a step the mix must make),
``float`` (as ``amp`` says, the default): :func:`feature_dtype`.

Epoch numbers in events, history and results are 1-based.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.split import SplitData
from ..eval.evaluate import EvalInputs, EvalResult, evaluate, pad_left
from ..models.item_encoders import STRATEGIES, build_item_encoder
from ..models.sasrec import SASRec, SASRecConfig
from .. import endings
from ..metric_names import METRICS
from .device import resolve_device
from ..devices import cpu_has_bf16, resolve_amp
from ..heap import keep_freed_memory
from .batching import BATCHINGS, epoch_plan, equal_slices
from .defaults import AMP_CHOICES, CHECKPOINT_NAME, FEATURE_BUFFERS, GBCE_T, LAYER_INITS, LAYER_LR_MULT, LOSSES, SAMPLERS  # noqa: F401
from .losses import full_softmax_loss, gbce_loss, logq_softmax_loss, sampled_softmax_loss  # noqa: F401 - sampled_: re-exported
from .negatives import NegativeSampler, shared_negatives

CHECKPOINT_VERSION = 1
# settings that may differ between an interrupted run and its resumption
_RESUME_FREE = {"device", "amp", "feature_buffer", "num_threads", "log_every", "eval_batch_size"}


@dataclass
class TrainConfig:
    strategy: str = "id"
    layers: list[int] | None = None      # indices into the feature tensor's layer axis; None = all
    epochs: int = 200                    # a cap: runs normally end by early stopping (dff_core.endings)
    batch_size: int = 256
    lr: float = 1e-3
    # after each evaluation that does not beat the best, every group's lr is multiplied by this (1: a constant lr).
    # Why: at a learning rate that makes early progress fast, the last gains come from averaging out the noise a
    # large step leaves; halving on a plateau gets them in a few epochs instead of a slow drift (README, "Training
    # on a CPU at its floor").
    lr_decay: float = 1.0
    weight_decay: float = 0.0
    patience: int = 5                    # evaluations without improvement; <= 0 disables early stopping
    metric: str = "NDCG@10"
    seed: int = 42
    eval_every: int = 1
    device: str = "cpu"
    max_len: int = 50
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    normalize_features: bool = True
    cold_threshold: int = 5
    eval_batch_size: int = 256           # users per scoring block: 256 x 19,221 scores stay in cache (1.7 vs 3.1 s at 1024)
    log_every: int = 10                  # a "step" event every this many steps (and the last one)
    num_threads: int | None = None       # torch.set_num_threads for the duration of train()
    # DFF layer logits w (a = softmax(w)): their own AdamW group at lr * layer_lr_mult, no weight decay. Adam moves
    # each parameter by about one learning rate per step, so at the shared lr the softmax barely leaves uniform.
    layer_lr_mult: float = LAYER_LR_MULT
    # the fusion strategies' content parameters (the item encoder's all but the ID table and DFF's layer logits: the
    # projection W, the gate, concat's mix, replace's adapter) in their own group at lr * feature_lr_mult (1: no
    # group of their own). Why: they move every item's vector at once, so a rate that suits the per-item ID rows
    # jerks the whole item table: at lr 1e-2 single-layer gates sat near popularity for ~5 epochs (README).
    feature_lr_mult: float = 1.0
    layer_init: str = "uniform"          # "uniform" (w = 0) or "probe" (w = z-scores of layer_scores)
    layer_scores: list[float] | None = None  # per chosen layer, higher = more useful (filled in for "probe")
    loss: str = "full"                   # full | sampled | gbce (see module docstring)
    negatives: int = 256                 # negatives per user and step ("sampled" / "gbce"), per batch ("logq")
    negative_sampler: str = "uniform"    # uniform | in-batch
    gbce_t: float = GBCE_T               # gBCE calibration t in [0, 1] (loss="gbce")
    amp: str = "none"                    # none | bf16 | auto (see module docstring)
    feature_buffer: str = "float"        # DFF's layer stack: float | int8 (feature_dtype)
    batching: str = "random"             # random | length (users of similar length together)

    def model_config(self) -> SASRecConfig:
        return SASRecConfig(hidden=self.hidden, blocks=self.blocks, heads=self.heads,
                            max_len=self.max_len, dropout=self.dropout)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = None if self.layers is None else [int(x) for x in self.layers]
        d["layer_scores"] = None if self.layer_scores is None else [float(x) for x in self.layer_scores]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}")
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}")
        from ..limits import TRAIN_RANGES, check_ranges  # every number's range, in one place (dff_core.limits)

        check_ranges({name: getattr(self, name) for name in TRAIN_RANGES}, TRAIN_RANGES)
        for name in ("epochs", "batch_size", "eval_every", "max_len", "hidden", "blocks", "heads", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.lr_decay == 0:  # its range (above) admits 0, which would stop training without saying so
            raise ValueError("lr_decay must be a number above 0 and at most 1, got 0")
        if self.layer_init not in LAYER_INITS:
            raise ValueError(f"unknown layer_init {self.layer_init!r}; choose from {', '.join(LAYER_INITS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        if self.negative_sampler not in SAMPLERS:
            raise ValueError(f"unknown negative sampler {self.negative_sampler!r}; choose from {', '.join(SAMPLERS)}")
        if self.loss in ("sampled", "gbce", "logq") and self.negatives < 1:
            raise ValueError(f"negatives must be >= 1 for the {self.loss} loss")
        if not (math.isfinite(self.gbce_t) and 0 <= self.gbce_t <= 1):
            raise ValueError(f"gbce_t must be in [0, 1], got {self.gbce_t}")
        if self.batching not in BATCHINGS:
            raise ValueError(f"unknown batching {self.batching!r}; choose from {', '.join(BATCHINGS)}")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"unknown amp {self.amp!r}; choose from {', '.join(AMP_CHOICES)}")
        if self.feature_buffer not in FEATURE_BUFFERS:
            raise ValueError(f"unknown feature buffer {self.feature_buffer!r}; choose from {', '.join(FEATURE_BUFFERS)}")


@dataclass
class TrainResult:
    best_epoch: int                      # 0 if no evaluation happened yet (cancelled early)
    epochs_run: int
    history: list[dict]
    val: dict[str, float] | None
    test: dict[str, float] | None        # None when cancelled
    val_buckets: dict | None
    test_buckets: dict | None
    layer_weights: dict[int, float] | None
    gate_mean: float | None
    seconds: float                       # total training time, across resumptions
    seconds_per_epoch: float
    cancelled: bool = False
    stopped_early: bool = False
    ending: str = ""                     # dff_core.endings.EARLY_STOPPED | CAPPED_IMPROVING | CAPPED_CONVERGED | CANCELLED
    model: SASRec | None = field(default=None, repr=False)  # best state loaded (current one if cancelled)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}


def cpu_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether ``cfg.amp`` (``auto`` resolved for ``device``) asks for bfloat16 on a CPU that has it (module
    docstring)."""
    return resolve_amp(cfg.amp, device) == "bf16" and device.type == "cpu" and cpu_has_bf16()


def feature_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype:
    """The fusion strategies' frozen feature buffer: bfloat16 where :func:`cpu_bf16`, else float32; DFF's layer
    stack in int8 (``dff_core.models.item_encoders.quantize_int8``) with ``feature_buffer="int8"``.

    Why int8 is there: the buffer is read whole twice a step, and on 31 SmolLM2 layers over MicroLens-50k the int8
    mix took a 2-thread epoch from 14.5 to 12.8 s (ID: 9.6 s). Why it is not the default: over two seeds each its
    converged test NDCG@10 was 1.2 % under the bfloat16 buffer's (0.0438 / 0.0433 against 0.0442 / 0.0440; val
    0.3 % under), within seed noise but both seeds lower, and the bfloat16 buffer was held to 1 % (README)."""
    if cfg.strategy == "dff" and cfg.feature_buffer == "int8":
        return torch.int8
    return torch.bfloat16 if cpu_bf16(cfg, device) else torch.float32


def build_model(num_items: int, cfg: TrainConfig, features=None, device: torch.device | str = "cpu") -> SASRec:
    """The SASRec + item encoder described by ``cfg`` (random init from the current torch RNG), for ``device``
    (where the feature buffer's dtype depends on it: bfloat16 under ``amp="bf16"`` on a CPU that has it)."""
    scores = cfg.layer_scores if cfg.layer_init == "probe" else None
    if cfg.strategy == "dff" and cfg.layer_init == "probe" and scores is None:
        raise ValueError("layer_init 'probe' needs layer_scores (the usefulness score of each chosen layer)")
    encoder = build_item_encoder(cfg.strategy, num_items, cfg.hidden, features, cfg.layers,
                                 normalize=cfg.normalize_features, layer_scores=scores,
                                 feature_dtype=feature_dtype(cfg, torch.device(device)))
    return SASRec(cfg.model_config(), encoder)


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: every parameter at ``cfg.lr``, except DFF's layer logits at ``lr * layer_lr_mult``
    without weight decay (decay would pull the softmax back to uniform), and, when ``feature_lr_mult`` is not 1,
    the item encoder's content parameters at ``lr * feature_lr_mult`` (last, so that a run from before the setting,
    which trained with 1, resumes into the groups its checkpoint holds)."""
    rest, layer, feature = [], [], []
    for name, p in model.named_parameters():
        if name.endswith("layer_logits"):
            layer.append(p)
        elif cfg.feature_lr_mult != 1 and name.startswith("item_encoder.") and name != "item_encoder.emb":
            feature.append(p)
        else:
            rest.append(p)
    groups = [{"params": rest}]
    if layer:
        groups.append({"params": layer, "lr": cfg.lr * cfg.layer_lr_mult, "weight_decay": 0.0})
    if feature:
        groups.append({"params": feature, "lr": cfg.lr * cfg.feature_lr_mult})
    return groups


@dataclass
class TrainingBatches:
    """Left-padded training inputs / targets (model indices, 0 = padding / no target), built once."""

    inputs: torch.Tensor   # [U', max_len]
    targets: torch.Tensor  # [U', max_len]
    lengths: torch.Tensor  # [U'] number of valid positions

    @classmethod
    def build(cls, data: SplitData, max_len: int) -> "TrainingBatches":
        lens = np.array([len(s) for s in data.train], dtype=np.int64)
        flat = np.concatenate(data.train).astype(np.int64) if data.train else np.zeros(0, np.int64)
        window = pad_left(flat, lens, max_len + 1)     # last max_len + 1 items of each prefix
        inp, tgt = window[:, :-1], window[:, 1:]
        tgt = np.where(inp > 0, tgt, 0)
        keep = lens >= 2                                # users with at least one training pair
        return cls(inputs=torch.from_numpy(np.ascontiguousarray(inp[keep])),
                   targets=torch.from_numpy(np.ascontiguousarray(tgt[keep])),
                   lengths=torch.from_numpy(np.minimum(lens[keep] - 1, max_len)))

    def __len__(self) -> int:
        return len(self.lengths)

    def to(self, device) -> "TrainingBatches":
        return TrainingBatches(self.inputs.to(device), self.targets.to(device), self.lengths.to(device))


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's contents with every tensor on the CPU, wherever it was written (``map_location``)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _optimizer_to(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Move optimizer state tensors to ``device`` (``step`` counters stay where torch keeps them)."""
    for state in opt.state.values():
        for k, v in state.items():
            if torch.is_tensor(v) and k != "step":
                state[k] = v.to(device)


def _cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _check_resumable(saved: dict, cfg: TrainConfig, num_items: int, before_it_existed: dict | None = None) -> None:
    """Refuse, in one line that says why, a checkpoint this run cannot continue from; else return.

    A setting the checkpoint's config lacks (added since it was written) counts with ``before_it_existed``'s
    value, the one such runs trained with (the caller knows them: ``jobs.resume.BEFORE_IT_EXISTED``), else
    ``TrainConfig``'s default. A DFF checkpoint from before ``layer_lr_mult`` holds one optimizer group where the
    run now has two (its layer logits apart): refused here, not by ``optimizer.load_state_dict`` deep inside."""
    if saved.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint version {saved.get('version')} is not {CHECKPOINT_VERSION}")
    if saved.get("num_items") != num_items:
        raise ValueError("checkpoint was written for a different dataset (num_items differs)")
    now, old = cfg.to_dict(), saved["config"]
    groups = len((saved.get("optimizer") or {}).get("param_groups") or [])
    if cfg.strategy == "dff" and groups == 1:
        raise ValueError("this DFF checkpoint is from before layer_lr_mult (its layer logits shared one optimizer "
                         "group with the model) and cannot be resumed; train the run again from the start")
    default = TrainConfig().to_dict()  # a setting added since the checkpoint was written had its default then
    default["loss"] = "full"           # checkpoints from before the loss option trained with full softmax
    default.update({k: v for k, v in (before_it_existed or {}).items() if k in default})
    diff = {k for k in now if k not in _RESUME_FREE and old.get(k, default[k]) != now[k]}
    if diff:
        raise ValueError(f"checkpoint config differs in {sorted(diff)}; use another checkpoint_dir")


@dataclass
class TrainState:
    """Where a training run stands: all a checkpoint must hold besides weights, optimizer and RNG states, so a
    resumed run continues exactly (mid-epoch too: ``perm``, ``step`` and ``loss_sum`` of the epoch under way)."""
    epoch: int = 0                       # epochs finished
    step: int = 0                        # steps finished in the epoch under way
    perm: torch.Tensor | None = None     # that epoch's row order (None between epochs): batching.epoch_plan
    ends: torch.Tensor | None = None     # where its batches end in perm (None in checkpoints from before it)
    loss_sum: float = 0.0
    epoch_seconds: float = 0.0           # training time spent in that epoch before an interruption
    history: list = field(default_factory=list)
    best_metric: float = -math.inf
    best_epoch: int = 0
    best_state: dict | None = None       # CPU copy of the best weights
    bad_evals: int = 0                   # evaluations in a row without a better validation metric
    stopped_early: bool = False
    done: bool = False
    seconds_total: float = 0.0           # time of earlier calls (before a resume)

    def to_dict(self) -> dict:
        """A plain dict (no copies of the tensors), as checkpoints store it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, saved: dict) -> "TrainState":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})


@dataclass
class _Generators:
    """The RNGs a run draws from besides torch's global one: batch order and sampled negatives."""
    shuffle: torch.Generator
    negatives: torch.Generator


def _save_checkpoint(path: Path, cfg: TrainConfig, num_items: int, model: torch.nn.Module,
                     opt: torch.optim.Optimizer, gens: _Generators, device: torch.device, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save({"version": CHECKPOINT_VERSION, "num_items": num_items, "config": cfg.to_dict(),
                  "model": _cpu_state(model), "optimizer": opt.state_dict(),
                  "rng_torch": torch.get_rng_state(),
                  "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                  "rng_shuffle": gens.shuffle.get_state(), "rng_negatives": gens.negatives.get_state(),
                  "state": state}, path)


def _restore_checkpoint(path: Path, cfg: TrainConfig, num_items: int, model: torch.nn.Module,
                        opt: torch.optim.Optimizer, gens: _Generators, device: torch.device,
                        before_it_existed: dict | None = None) -> TrainState:
    """Load weights, optimizer and RNG states into the run; returns where it stood."""
    saved = load_checkpoint(path)
    _check_resumable(saved, cfg, num_items, before_it_existed)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    _optimizer_to(opt, device)
    torch.set_rng_state(saved["rng_torch"])
    if saved.get("rng_cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(saved["rng_cuda"], device)
    gens.shuffle.set_state(saved["rng_shuffle"])
    if saved.get("rng_negatives") is not None:
        gens.negatives.set_state(saved["rng_negatives"])
    return TrainState.from_dict(saved["state"])


def _result(st: TrainState, cfg: TrainConfig, model: SASRec, seconds: float, *, cancelled: bool,
            val: EvalResult | None = None, test: EvalResult | None = None) -> TrainResult:
    """The one place a ``TrainResult`` is built: a cancelled run reports its best validation so far and no
    test; a finished one its best state's validation and test (``val``/``test``), and how it ended."""
    history = st.history
    per_epoch = float(np.mean([r["seconds"] for r in history])) if history else 0.0
    if cancelled:
        best_val = next((r["val"] for r in history if r["epoch"] == st.best_epoch), None)
        ending, val_metrics, val_buckets = endings.CANCELLED, best_val, None
    else:
        ending = endings.classify(cancelled=False, stopped_early=st.stopped_early,
                                  evals_since_best=st.bad_evals if st.best_epoch else None, patience=cfg.patience)
        val_metrics, val_buckets = val.metrics, val.buckets
    return TrainResult(best_epoch=st.best_epoch, epochs_run=st.epoch, history=history, val=val_metrics,
                       test=test.metrics if test else None, val_buckets=val_buckets,
                       test_buckets=test.buckets if test else None, layer_weights=model.item_encoder.layer_weights(),
                       gate_mean=model.item_encoder.gate_mean(), seconds=seconds, seconds_per_epoch=per_epoch,
                       cancelled=cancelled, stopped_early=False if cancelled else st.stopped_early, ending=ending,
                       model=model)


def train(data: SplitData, cfg: TrainConfig, features: np.ndarray | None = None,
          checkpoint_dir: Path | str | None = None,
          callback: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None, *, may_write: Callable[[], bool] | None = None,
          before_it_existed: dict | None = None) -> TrainResult:
    """Train SASRec with ``cfg.strategy`` on ``data`` (see module docstring); resume if a checkpoint
    exists in ``checkpoint_dir``. ``callback(event)`` receives "step" and "epoch" events;
    ``should_stop()`` is polled between steps and cancels gracefully (checkpoint, ``cancelled=True``).

    ``may_write()`` is asked before every checkpoint save; ``False`` skips it (a runner whose job was taken
    over must not overwrite the checkpoint its new owner resumes from). ``before_it_existed`` holds the values
    of settings added since a checkpoint was written, as such runs trained (``_check_resumable``)."""
    cfg.validate()
    device = torch.device(resolve_device(cfg.device))  # a clear ValueError before any work
    prev_threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    # on a CPU, freed blocks stay in the process for the next step instead of being unmapped and faulted in again
    heap = keep_freed_memory() if device.type == "cpu" else contextlib.nullcontext()
    try:
        with heap:
            return _train(data, cfg, features, Path(checkpoint_dir) if checkpoint_dir else None,
                          callback or (lambda event: None), should_stop or (lambda: False), may_write=may_write,
                          before_it_existed=before_it_existed)
    finally:
        torch.set_num_threads(prev_threads)


def _train(data: SplitData, cfg: TrainConfig, features: np.ndarray | None, ckpt_dir: Path | None,
           callback: Callable[[dict], None], should_stop: Callable[[], bool], *,
           may_write: Callable[[], bool] | None = None, before_it_existed: dict | None = None) -> TrainResult:
    t_call = time.perf_counter()
    device = torch.device(resolve_device(cfg.device))
    autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16)
                if resolve_amp(cfg.amp, device) == "bf16" and device.type == "cuda" else contextlib.nullcontext())
    torch.manual_seed(cfg.seed)
    model = build_model(data.num_items, cfg, features, device).to(device)
    matmul_dtype = torch.bfloat16 if cpu_bf16(cfg, device) else torch.float32
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gens = _Generators(shuffle=torch.Generator().manual_seed(cfg.seed),
                       negatives=torch.Generator().manual_seed(cfg.seed + 1))
    sampler = None
    if cfg.loss in ("sampled", "gbce"):  # rows = users with >= 2 training items, in order (as in TrainingBatches.build)
        sampler = NegativeSampler([np.asarray(s) for s in data.train if len(s) >= 2], data.num_items,
                                  cfg.negatives, cfg.negative_sampler, gens.negatives)

    batches = TrainingBatches.build(data, cfg.max_len).to(device)
    n_train = len(batches)
    steps = max(1, math.ceil(n_train / cfg.batch_size)) if n_train else 0
    val_inputs = EvalInputs.build(data, "val", cfg.max_len)

    st = TrainState()
    ckpt_path = ckpt_dir / CHECKPOINT_NAME if ckpt_dir else None
    if ckpt_path is not None and ckpt_path.exists():
        st = _restore_checkpoint(ckpt_path, cfg, data.num_items, model, opt, gens, device, before_it_existed)
        # The checkpoint is written just before each epoch's event, so a kill between the two leaves the last
        # checkpointed epoch unseen by the listener (every earlier event ran before that epoch trained): replay
        # it. Listeners upsert, so an epoch they did see is not stored twice.
        if st.history:
            callback({"type": "epoch", **st.history[-1], "replayed": True})

    def save_checkpoint() -> None:
        if ckpt_path is not None and (may_write is None or may_write()):
            state = {**st.to_dict(), "seconds_total": st.seconds_total + (time.perf_counter() - t_call)}
            _save_checkpoint(ckpt_path, cfg, data.num_items, model, opt, gens, device, state)

    def evaluate_val() -> EvalResult:
        return evaluate(model, data, "val", cfg.eval_batch_size, cfg.cold_threshold, inputs=val_inputs)

    model.train()
    cancelled = False
    best_val: EvalResult | None = None          # this process's evaluation of st.best_state, if it made one
    while not st.done and st.epoch < cfg.epochs and steps:
        epoch = st.epoch + 1
        if st.perm is None:
            st.perm, st.ends = epoch_plan(batches.lengths.cpu(), cfg.batch_size, cfg.batching, gens.shuffle)
            st.step, st.loss_sum, st.epoch_seconds = 0, 0.0, 0.0
        elif st.ends is None:  # a checkpoint from before batch plans: its epoch was cut in equal random slices
            st.ends = equal_slices(n_train, cfg.batch_size)
        perm, ends = st.perm.to(device), st.ends.tolist()
        steps = len(ends)                       # length batches: about, not exactly, one per batch_size rows
        t_epoch = time.perf_counter()
        loss_sum = torch.tensor(st.loss_sum, dtype=torch.float64, device=device)
        for step in range(st.step, steps):
            if should_stop():
                st.step, st.loss_sum = step, float(loss_sum)
                st.epoch_seconds += time.perf_counter() - t_epoch
                save_checkpoint()
                cancelled = True
                break
            idx = perm[(ends[step - 1] if step else 0):ends[step]]
            width = int(batches.lengths[idx].max())
            inp, tgt = batches.inputs[idx, -width:], batches.targets[idx, -width:]
            with autocast:
                table = model.item_table()                  # once per step, for input and output
                h = model(inp, table)
                if cfg.loss == "logq":
                    sel = tgt > 0
                    neg = shared_negatives(data.num_items, cfg.negatives, gens.negatives).to(device)
                    loss = logq_softmax_loss(h[sel], tgt[sel], neg, table, data.num_items)
                elif sampler is None:
                    sel = tgt > 0
                    if device.type == "cuda":  # materialised logits are cheap on a GPU (bench/bench_gpu.py)
                        loss = F.cross_entropy(SASRec.scores(h[sel], table).float(), tgt[sel] - 1)
                    else:
                        loss = full_softmax_loss(h[sel], tgt[sel], table, matmul_dtype)
                else:
                    neg = sampler.sample(idx.cpu(), tgt if cfg.negative_sampler == "in-batch" else None).to(device)
                    loss = (sampled_softmax_loss(h, tgt, neg, table) if cfg.loss == "sampled"
                            else gbce_loss(h, tgt, neg, table, data.num_items, cfg.gbce_t))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
                callback({"type": "step", "epoch": epoch, "step": step + 1, "steps": steps,
                          "loss": float(loss_sum) / (step + 1)})
        if cancelled:
            break
        train_seconds = st.epoch_seconds + time.perf_counter() - t_epoch
        val = None
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            val_res = evaluate_val()
            val = val_res.metrics
            if val[cfg.metric] > st.best_metric:
                st.best_metric, st.best_epoch, st.best_state, st.bad_evals = (val[cfg.metric], epoch,
                                                                              _cpu_state(model), 0)
                best_val = val_res              # the final validation of best_state: evaluation is deterministic
            else:
                st.bad_evals += 1
                for group in opt.param_groups:      # saved with the optimizer: a resumed run keeps its decayed lr
                    group["lr"] *= cfg.lr_decay
        encoder = model.item_encoder
        record = {"epoch": epoch, "loss": float(loss_sum) / steps, "val": val,
                  "layer_weights": encoder.layer_weights(), "gate_mean": encoder.gate_mean(),
                  "seconds": st.epoch_seconds + time.perf_counter() - t_epoch,  # training + validation
                  "train_seconds": train_seconds}
        st.history.append(record)
        st.epoch, st.step, st.perm, st.ends, st.loss_sum, st.epoch_seconds = epoch, 0, None, None, 0.0, 0.0
        if cfg.patience > 0 and st.bad_evals >= cfg.patience:
            st.stopped_early = st.done = True
        elif epoch >= cfg.epochs:
            st.done = True
        save_checkpoint()                       # before the event: a crash in the callback loses nothing
        callback({"type": "epoch", **record})

    if cancelled:
        return _result(st, cfg, model, st.seconds_total + (time.perf_counter() - t_call), cancelled=True)
    if not steps:
        st.done = True
    if st.best_state is not None:
        model.load_state_dict(st.best_state)
    val_res = best_val if best_val is not None and st.best_state is not None else evaluate_val()
    test_res = evaluate(model, data, "test", cfg.eval_batch_size, cfg.cold_threshold)
    save_checkpoint()
    return _result(st, cfg, model, st.seconds_total + (time.perf_counter() - t_call), cancelled=False,
                   val=val_res, test=test_res)
