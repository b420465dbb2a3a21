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
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
REQS = [ROOT / "requirements.txt", ROOT / "requirements-nodeps.txt", ROOT / "requirements-ray.txt",
        ROOT / "requirements-mlflow.txt"]
STAMP = VENV / ".requirements"
# the package manager's locks (dpkg's, then apt's lists and archives): apt-get fails at once while another
# apt/dpkg (unattended upgrades, a second install) holds one, so ensure_chromium waits for them first
APT_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock",
             "/var/cache/apt/archives/lock")
APT_WAIT_S = 300.0  # the longest wait for a busy package manager (DFF_APT_WAIT overrides it)


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


def busy_lock(locks=APT_LOCKS) -> str | None:
    """The first of ``locks`` that another process holds (dpkg and apt take POSIX record locks on them), or None.

    A lock file that is missing, or that this user may not open, counts as free: apt-get itself then says
    what is wrong."""
    import fcntl

    for path in locks:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken and dropped at once: only a test
        except OSError:
            return str(path)
        finally:
            os.close(fd)  # closing drops the lock, if it was taken
    return None


def wait_for_package_manager(locks=APT_LOCKS, timeout: float | None = None, poll: float = 2.0,
                             clock=time.monotonic, sleep=time.sleep) -> bool:
    """Wait, at most ``timeout`` seconds (default ``DFF_APT_WAIT`` or 300), while another apt/dpkg holds one of
    the package manager's ``locks``. True once they are all free; False when the wait ran out. Says on stderr
    that it waits, every 30 s how long, and how it ended."""
    if timeout is None:
        timeout = float(os.environ.get("DFF_APT_WAIT") or APT_WAIT_S)
    held = busy_lock(locks)
    if held is None:
        return True
    start = clock()
    print(f"note: another apt/dpkg holds {held}: waiting for it, at most {timeout:.0f} s (DFF_APT_WAIT)",
          file=sys.stderr, flush=True)
    said = start
    while held is not None:
        now = clock()
        if now - start >= timeout:
            print(f"note: the package manager was still busy after {now - start:.0f} s ({held})", file=sys.stderr)
            return False
        if now - said >= 30:
            print(f"note: still waiting for {held} ({now - start:.0f} s)", file=sys.stderr, flush=True)
            said = now
        sleep(min(poll, max(0.0, timeout - (now - start))))
        held = busy_lock(locks)
    print(f"note: the package manager is free (waited {clock() - start:.0f} s)", file=sys.stderr, flush=True)
    return True


def apt_install(packages: list[str], *, locks=APT_LOCKS, timeout: float | None = None, run=None,
                clock=time.monotonic, sleep=time.sleep) -> bool:
    """``apt-get update`` and ``install`` ``packages``, after waiting for a busy package manager (bounded by
    ``timeout``, as :func:`wait_for_package_manager`). Another apt that takes the lock between the wait and
    apt-get is waited for again within the same bound. False, with a note, when it could not install."""
    run = run or _run
    if timeout is None:
        timeout = float(os.environ.get("DFF_APT_WAIT") or APT_WAIT_S)
    deadline = clock() + timeout
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    while True:
        if not wait_for_package_manager(locks, max(0.0, deadline - clock()), clock=clock, sleep=sleep):
            print(f"note: not installing {' '.join(packages)}: the package manager stayed busy", file=sys.stderr)
            return False
        wait = ["-o", f"DPkg::Lock::Timeout={max(0, int(deadline - clock()))}"]  # apt's own wait, same bound
        try:
            run(["apt-get", *wait, "update", "-q"], env=env)
            run(["apt-get", *wait, "install", "-y", "-q", "--no-install-recommends", *packages], env=env)
            return True
        except (OSError, subprocess.CalledProcessError) as exc:
            if busy_lock(locks) is not None and clock() < deadline:
                continue  # another apt took the lock first: wait for it again
            print(f"note: installing {' '.join(packages)} failed ({exc})", file=sys.stderr)
            return False


def ensure_chromium() -> None:
    """The browser tests drive Debian's Chromium; install it when missing and possible (root + apt-get),
    waiting for a package manager that another process is using (``apt_install``).

    Without it those tests skip with the reason; nothing else needs it."""
    import shutil

    known = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
    if os.environ.get("DFF_CHROMIUM") or any(Path(p).exists() for p in known) or shutil.which("chromium"):
        return
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        print("note: no Chromium and no root apt-get: the browser tests will skip (apt-get install chromium)",
              file=sys.stderr)
        return
    if not apt_install(["chromium"]):
        print("note: no Chromium: the browser tests will skip", file=sys.stderr)


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
