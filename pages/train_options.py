"""Device and objective widgets shared by the Train and Study pages (a helper module, not a page).

Defaults come from ``dff_core.train.defaults`` like the CLI's; the request is validated by ``jobs.submit``."""
from __future__ import annotations

import streamlit as st

from dff_core.train.defaults import LOSSES, SAMPLERS, TRAIN_DEFAULTS
from jobs import submit


def fast_path_settings(prefix: str) -> dict:
    """Device, bf16 autocast and the training objective as a settings dict (keys of ``TrainConfig``)."""
    c = st.columns(4)
    devices = submit.device_choices()
    device = c[0].selectbox("Device", devices, index=devices.index(TRAIN_DEFAULTS["device"]), key=f"{prefix}_device",
                            help="auto: the GPU when there is one, else the CPU" +
                                 ("" if len(devices) > 2 else " (no CUDA device on this machine)"))
    losses = list(LOSSES)
    loss = c[1].selectbox("Loss", losses, index=losses.index(TRAIN_DEFAULTS["loss"]), key=f"{prefix}_loss",
                          help="full: softmax over every item; sampled: the target against N sampled negatives "
                               "(never from the user's own history). Evaluation always ranks every item.")
    negatives = int(c[2].number_input("Negatives", 1, 100_000, int(TRAIN_DEFAULTS["negatives"]),
                                      key=f"{prefix}_negatives", disabled=loss != "sampled"))
    samplers = list(SAMPLERS)
    sampler = c[3].selectbox("Negative sampler", samplers, index=samplers.index(TRAIN_DEFAULTS["negative_sampler"]),
                             key=f"{prefix}_sampler", disabled=loss != "sampled",
                             help="uniform over the catalogue, or the other targets of the batch")
    amp = st.checkbox("bf16 autocast (CUDA only)", value=TRAIN_DEFAULTS["amp"] == "bf16", key=f"{prefix}_amp",
                      disabled=len(devices) <= 2 or device == "cpu")
    return {"device": device, "amp": "bf16" if amp and device != "cpu" and len(devices) > 2 else "none",
            "loss": loss, "negatives": negatives, "negative_sampler": sampler}
