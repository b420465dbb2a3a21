"""``python -m dff_core tiny-checkpoint FAMILY DIR``: a tiny random checkpoint of an LVLM family, offline.

The result loads as backbone ``FAMILY:DIR`` (e.g. ``extract --backbone qwen2-vl:DIR``), so every family's
code path can be tried without downloading a model. The features are random: for plumbing, not science.
"""
from __future__ import annotations

import argparse

from cli.core import COMMANDS, EXTENSIONS


# the families dff_core.backbones.tiny can build, spelled out here so that building the parser imports no backbone
# code (numpy and the registry: ~0.1 s of every quick command); a test keeps the two equal
TINY_FAMILIES = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl", "llava-onevision", "smolvlm")


def _register(sub) -> None:
    p = sub.add_parser("tiny-checkpoint", help="write a tiny random-weight checkpoint of an LVLM family (offline)")
    p.add_argument("family", help=f"one of {', '.join(TINY_FAMILIES)}")
    p.add_argument("dir", help="output folder (created; files in it are overwritten)")
    p.add_argument("--seed", type=int, default=0)


def cmd_tiny_checkpoint(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from dff_core.backbones.tiny import TINY_FAMILIES, build_tiny_checkpoint

    hf_logging.disable_progress_bar()  # a sub-second save needs no progress bars
    family = args.family.strip().lower()
    if family not in TINY_FAMILIES:
        raise ValueError(f"no tiny checkpoint for family {args.family!r}; one of {', '.join(TINY_FAMILIES)}")
    out = build_tiny_checkpoint(family, args.dir, seed=args.seed)
    print(f"tiny {family} checkpoint in {out}; use it as --backbone {family}:{out}")
    return 0


EXTENSIONS.append(_register)
COMMANDS["tiny-checkpoint"] = cmd_tiny_checkpoint
