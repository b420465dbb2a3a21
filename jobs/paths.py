"""Server paths a person types on a shared dashboard (the Data page's files and media folders) stay under allowed
roots: a dashboard that listens beyond loopback must not read ``/etc`` or another user's home because a visitor
typed it.

The roots are the setting ``DFF_ALLOWED_ROOTS`` (folders separated by ``os.pathsep``) or, by default, the
database's folder and the project's ``data`` folder. A path is resolved (``..`` and symlinks followed) before it
is compared, so neither leads out. The pages decide when the rule applies (``pages.common.server_is_shared``);
this module only checks.
"""
from __future__ import annotations

import os
from pathlib import Path

from storage import Database

PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"


def allowed_roots(db: Database) -> list[Path]:
    """The folders a shared dashboard may read server paths from, resolved."""
    setting = os.environ.get("DFF_ALLOWED_ROOTS", "").strip()
    roots = [Path(p) for p in setting.split(os.pathsep) if p.strip()] if setting else [db.path.parent, PROJECT_DATA]
    return [r.expanduser().resolve() for r in roots]


def confine(text: str, roots: list[Path], what: str) -> str:
    """``text`` unchanged when it resolves inside one of ``roots``, else ValueError in one line naming the roots."""
    resolved = Path(text).expanduser().resolve()
    if any(resolved == root or resolved.is_relative_to(root) for root in roots):
        return text
    raise ValueError(f"{what} {text!r} is outside the folders this shared dashboard reads from "
                     f"({', '.join(str(r) for r in roots)}); put the files under one of them, or have whoever runs "
                     "the server add a folder to DFF_ALLOWED_ROOTS")
