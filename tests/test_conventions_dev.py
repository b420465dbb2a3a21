"""dev.py waits for a busy package manager instead of skipping the browser tests: a fake lock file held by
another process (the way dpkg and apt hold theirs: a POSIX record lock) stands in for the real ones, a fake
clock and sleep stand in for time, and a fake apt-get records what would run. The real apt is never touched."""
from __future__ import annotations

import subprocess
import sys

import pytest

import dev

HOLD = ("import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "sys.stdin.readline()\n")


class Holder:
    """Another process holding ``path``'s lock until :meth:`release`."""

    def __init__(self, path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)


class FakeTime:
    """A clock that only moves when slept on; ``on_sleep(n)`` runs at the n-th sleep (1-based)."""

    def __init__(self, on_sleep=None) -> None:
        self.now, self.sleeps, self.on_sleep = 1000.0, 0, on_sleep or (lambda n: None)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds
        self.sleeps += 1
        self.on_sleep(self.sleeps)


@pytest.fixture
def lock(tmp_path):
    path = tmp_path / "lock-frontend"
    path.write_text("")
    holders: list[Holder] = []
    yield path, holders
    for h in holders:
        h.release()


def test_busy_lock_sees_a_lock_another_process_holds(lock, tmp_path):
    path, holders = lock
    locks = [tmp_path / "missing", path]
    assert dev.busy_lock(locks) is None
    holders.append(Holder(path))
    assert dev.busy_lock(locks) == str(path)
    assert dev.busy_lock(locks) == str(path)  # testing it took nothing away from the holder
    holders[0].release()
    assert dev.busy_lock(locks) is None


def test_waits_until_the_package_manager_is_free(lock, capsys):
    path, holders = lock
    holders.append(Holder(path))
    t = FakeTime(on_sleep=lambda n: n == 3 and holders[0].release())
    assert dev.wait_for_package_manager([path], timeout=300, poll=2, clock=t.clock, sleep=t.sleep) is True
    assert t.sleeps == 3 and t.now == 1006.0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"note: another apt/dpkg holds {path}: waiting for it, at most 300 s (DFF_APT_WAIT)"
    assert err[-1] == "note: the package manager is free (waited 6 s)" and len(err) == 2


def test_the_wait_is_bounded(lock, capsys, monkeypatch):
    path, holders = lock
    holders.append(Holder(path))
    monkeypatch.setenv("DFF_APT_WAIT", "65")
    t = FakeTime()
    assert dev.wait_for_package_manager([path], poll=2, clock=t.clock, sleep=t.sleep) is False
    assert t.now == 1065.0  # exactly the bound, not a poll past it
    err = capsys.readouterr().err
    assert "at most 65 s" in err and "still waiting" in err
    assert f"still busy after 65 s ({path})" in err


def test_a_free_package_manager_is_not_waited_for(lock, capsys):
    path, _ = lock
    t = FakeTime()
    assert dev.wait_for_package_manager([path], timeout=300, clock=t.clock, sleep=t.sleep) is True
    assert t.sleeps == 0 and capsys.readouterr().err == ""


def test_apt_install_waits_then_installs(lock):
    path, holders = lock
    holders.append(Holder(path))
    ran = []
    t = FakeTime(on_sleep=lambda n: n == 2 and holders[0].release())

    def run(cmd, env=None):
        assert dev.busy_lock([path]) is None  # apt-get only ever runs on a free package manager
        ran.append(cmd)

    assert dev.apt_install(["chromium"], locks=[path], timeout=300, run=run, clock=t.clock, sleep=t.sleep)
    assert [c[3] for c in ran] == ["update", "install"] and ran[1][-1] == "chromium"
    assert all("DPkg::Lock::Timeout=296" in c for c in ran)  # apt's own wait: what is left of the bound


def test_apt_install_waits_again_when_another_apt_takes_the_lock_first(lock):
    path, holders = lock
    ran = []
    t = FakeTime(on_sleep=lambda n: n == 1 and holders[-1].release())

    def run(cmd, env=None):
        ran.append(cmd)
        if len(ran) == 1:  # another apt got there between our wait and apt-get: it fails on the lock
            holders.append(Holder(path))
            raise subprocess.CalledProcessError(100, cmd)

    assert dev.apt_install(["chromium"], locks=[path], timeout=300, run=run, clock=t.clock, sleep=t.sleep)
    assert len(ran) == 3 and "update" in ran[1] and "install" in ran[2]


def test_apt_install_gives_up_without_running_apt_when_the_lock_stays(lock, capsys):
    path, holders = lock
    holders.append(Holder(path))
    t = FakeTime()
    ran = []
    assert not dev.apt_install(["chromium"], locks=[path], timeout=20, run=lambda c, env=None: ran.append(c),
                               clock=t.clock, sleep=t.sleep)
    assert ran == [] and "not installing chromium: the package manager stayed busy" in capsys.readouterr().err


def test_a_real_failure_is_not_retried(lock, capsys):
    path, _ = lock
    ran = []

    def run(cmd, env=None):
        ran.append(cmd)
        raise subprocess.CalledProcessError(100, cmd)

    t = FakeTime()
    assert not dev.apt_install(["chromium"], locks=[path], timeout=300, run=run, clock=t.clock, sleep=t.sleep)
    assert len(ran) == 1 and "installing chromium failed" in capsys.readouterr().err
