"""The training settings every entry point starts from (CLI ``train``/``submit``/``study``, sweeps, the Train and
Study pages): ``jobs.workflows.run_training`` fills what a request leaves out from here, so a queued job, a
sweep and a foreground run agree. ``TrainConfig``'s own defaults stay those of the original objective (full
softmax, batch 256, lr 1e-3, CPU) for library use and older checkpoints.

Why these values: ``bench/bench_time_to_quality.py`` and ``bench/bench_gpu.py`` (README, "Fast path: training").
- Loss: full softmax. On the full MicroLens-50k (19,220 items) sampled softmax with 256 uniform negatives ends
  21-25 % lower on test NDCG@10 (CPU: 0.0322 vs 0.0410; one H200: 0.0320 vs 0.0427, id-only) and on the GPU it
  is not even faster to its best; on a 3,000-item catalogue the two take about the same time and full softmax
  ends 3-5 % higher. ``--loss sampled`` stays an opt-in.
  gBCE (``--loss gbce``) and logQ-corrected sampled softmax over 2,048 shared negatives (``--loss logq``) were
  measured on the whole MicroLens-50k on 2 CPU cores too: gBCE hardly learns, logq converges to 0.85x full
  softmax's test NDCG@10 (2 seeds) with no shorter epoch, so full softmax stays the default at every size.
- Batch and learning rate follow the dataset's size (:func:`scale_defaults`): from
  :data:`LARGE_DATASET_USERS` users, batch 1024 / lr 1e-2, halved after each evaluation that does not beat the best
  (``lr_decay`` 0.5). Batch 1024 / lr 3e-3 first: on the full MicroLens-50k (50,000 users) it converged to the same
  test NDCG@10 in half the wall time of 256 / 1e-3 (one H200, id 0.0427 vs 0.0427, dff 0.0435 vs 0.0435; 1.3x
  sooner to equal quality on 2 CPU cores), and on the 3,000-item set (12,676 users) it converged 17.7 % higher.
  Then (2 CPU cores, README "Training on a CPU at its floor"): a constant 6e-3 stopped ~1.4x sooner than 3e-3 but
  ~2 % lower on MicroLens-50k's test; 1e-2 halved on each plateau stops about as soon as 6e-3 (ID: 23 epochs for
  seeds 1 and 42 against 18 / 26; 3e-3 took 28-32) and reaches the best validation of all (ID 0.0571 / 0.0569
  against 0.0557-0.0562), test 0.0433 / 0.0444 (3e-3: mean 0.0433); on the 3,000-item set 25 / 29 epochs against
  31 / 42 at 3e-3, test 0.0951 / 0.0965 against 0.0948 / 0.0961. The rate's early steps make the progress, the
  halvings take the noise out of the last gains. The fusion strategies' content side (``feature_lr_mult`` 0.3: the
  projection and gate at 3e-3): at 1e-2 for every parameter single-layer gates sat near popularity for ~5 epochs
  and stopped after 31 (layer 30) and 46 (layer 15) epochs (README, "Training on a CPU at its floor"). Below that size: 256 / 1e-3, constant (nothing measured there).
- Batching ``length`` (:mod:`dff_core.train.batching`): users of similar length batched together, each batch holding
  about as many targets as a random batch. On the whole MicroLens-50k a random batch of 1,024 users runs the model
  over ~11x the positions that hold a target; length batches ~1.1x. With the chunked full softmax
  (:mod:`dff_core.train.losses`) an ID epoch on 2 CPU cores fell from ~38 s (random) to ~18 s (length), float32.
- Amp ``auto``: bfloat16 products in the full softmax (and a bfloat16 feature buffer) on a CPU with native
  bfloat16 (AMX / AVX512-BF16), float32 elsewhere and on GPUs (their measured path): README, "Training on a CPU".
- Device ``auto``: a CUDA GPU when there is one (full MicroLens-50k: 9 s to the best epoch on one H200 against
  over 74 min, capped, on 2 CPU cores).
A stored config without ``loss`` is full softmax (runs from before the option); a run's config stores the
batch size and learning rate it trained with, so changing these defaults never changes a stored run.
"""
from __future__ import annotations

CHECKPOINT_NAME = "checkpoint.pt"  # a run's checkpoint file: here, so finding one (Explore's sources) needs no torch

# the choices each setting takes: here, without torch, so the pages and the CLI can list them without loading it
LOSSES = ("full", "sampled", "gbce", "logq")
SAMPLERS = ("uniform", "in-batch")
AMP_CHOICES = ("auto", "none", "bf16")  # auto: bf16 on a CPU with native bfloat16, else none (devices.resolve_amp)
BATCHINGS = ("random", "length")        # dff_core.train.batching
# DFF's frozen layer stack: float (float32, or bfloat16 under amp bf16 on a CPU), int8 (a scale per layer and
# dimension, half bfloat16's bytes; opt-in: dff_core.train.trainer.feature_dtype)
FEATURE_BUFFERS = ("float", "int8")
LAYER_INITS = ("uniform", "probe")
LAYER_LR_MULT = 10.0  # TrainConfig.layer_lr_mult (README, "DFF layer weights: do they learn?")
GBCE_T = 0.75         # TrainConfig.gbce_t: gSASRec's recommended calibration (dff_core.train.losses)

TRAIN_DEFAULTS: dict = {"device": "auto", "amp": "auto", "feature_buffer": "float", "loss": "full", "negatives": 256,
                        "negative_sampler": "uniform", "batching": "length", "batch_size": 256, "lr": 1e-3,
                        "lr_decay": 1.0, "feature_lr_mult": 1.0}
LARGE_DATASET_USERS = 10_000  # from here on, LARGE_DATASET_SETTINGS (measured on 12,676 and 50,000 users)
LARGE_DATASET_SETTINGS: dict = {"batch_size": 1024, "lr": 1e-2, "lr_decay": 0.5, "feature_lr_mult": 0.3}


def scale_defaults(num_users: int | None) -> dict:
    """Batch size and learning rate for a dataset of ``num_users`` users (``None``: not known, the small-data
    values of :data:`TRAIN_DEFAULTS`)."""
    if num_users is not None and num_users >= LARGE_DATASET_USERS:
        return dict(LARGE_DATASET_SETTINGS)
    return {k: TRAIN_DEFAULTS[k] for k in LARGE_DATASET_SETTINGS}


def scale_defaults_text() -> str:
    """The rule in words, for help texts."""
    big = LARGE_DATASET_SETTINGS
    return (f"default {big['batch_size']} / lr {big['lr']:g} halved on each plateau (lr decay {big['lr_decay']:g}), "
            f"fusion runs' content side at lr x {big['feature_lr_mult']:g}, "
            f"on a dataset of {LARGE_DATASET_USERS:,} users or more, else {TRAIN_DEFAULTS['batch_size']} / lr "
            f"{TRAIN_DEFAULTS['lr']:g}, constant")


def with_defaults(settings: dict | None, num_users: int | None = None) -> dict:
    """``settings`` over :data:`TRAIN_DEFAULTS` and the dataset's :func:`scale_defaults` (``None`` values count
    as not given)."""
    return {**TRAIN_DEFAULTS, **scale_defaults(num_users), **{k: v for k, v in (settings or {}).items() if v is not None}}
