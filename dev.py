#!/usr/bin/env python3
"""Set-up and entry point for a fresh clone: needs only Python 3.11.

    python3 dev.py app    # install into .venv (first time), build the demo dataset, start the dashboard
    python3 dev.py test   # install into .venv (first time), run the whole test suite

The virtualenv is re-synced whenever requirements*.txt change (a hash is kept in .venv/.requirements).
Extra arguments after ``test`` go to pytest; after ``app`` to ``streamlit run``.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
REQS = [ROOT / "requirements.txt", ROOT / "requirements-nodeps.txt", ROOT / "requirements-ray.txt",
        ROOT / "requirements-mlflow.txt"]
STAMP = VENV / ".requirements"


def _run(cmd: list[str], **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def ensure_venv() -> None:
    if sys.version_info[:2] != (3, 11):
        print(f"note: DFF Studio is tested with Python 3.11; this is {sys.version.split()[0]}", file=sys.stderr)
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in REQS)).hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    if not PY.exists():
        print(f"creating virtualenv {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    pip = [PY, "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    _run(pip + ["-r", REQS[0]])
    _run(pip + ["--no-deps", "-r", REQS[1]])
    _run(pip + ["-r", REQS[2]])  # optional Ray engine: installed so its tests run
    _run(pip + ["-r", REQS[3]])  # optional MLflow export: likewise
    STAMP.write_text(digest)


def ensure_chromium() -> None:
    """The browser tests drive Debian's Chromium; install it when missing and possible (root + apt-get).

    Without it those tests skip with the reason; nothing else needs it."""
    import shutil

    known = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
    if os.environ.get("DFF_CHROMIUM") or any(Path(p).exists() for p in known) or shutil.which("chromium"):
        return
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        print("note: no Chromium and no root apt-get: the browser tests will skip (apt-get install chromium)",
              file=sys.stderr)
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        _run(["apt-get", "update", "-q"], env=env)
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], env=env)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"note: installing Chromium failed ({exc}); the browser tests will skip", file=sys.stderr)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("app", "test", "install"):
        print(__doc__)
        return 2
    ensure_venv()
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    os.chdir(ROOT)
    if argv[0] == "install":
        return 0
    if argv[0] == "test":
        ensure_chromium()
        return subprocess.run([str(PY), "-m", "pytest", "-q", *argv[1:]], env=env).returncode
    # app: the demo dataset first (built once), then the dashboard
    subprocess.run([str(PY), "-m", "dff_core", "demo"], env=env, check=True)
    return subprocess.run([str(PY), "serve.py", "--server.address", "127.0.0.1",  # streamlit run app.py, warmed
                           "--server.port", "8501", "--server.headless", "true",
                           "--browser.gatherUsageStats", "false", *argv[1:]], env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
