"""``Database.held_open``: the sessions of a burst share one open database, other processes are kept out only
while the hold lasts, and a hold that runs past its budget gives the file back at its next session."""
from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa

OPEN_ELSEWHERE = """
import sys, duckdb
try:
    duckdb.connect(sys.argv[1]).close()
    print("opened")
except duckdb.IOException as exc:
    print("locked" if "lock" in str(exc).lower() else f"error: {exc}")
"""


def other_process(path) -> str:
    """What a second process gets when it opens the file once, without waiting."""
    done = subprocess.run([sys.executable, "-c", OPEN_ELSEWHERE, str(path)], capture_output=True, text=True,
                          timeout=120)
    return done.stdout.strip() or done.stderr.strip()[-300:]


def _preserve_order(db) -> str:
    with db.session() as conn:
        return str(conn.execute(sa.text("SELECT current_setting('preserve_insertion_order')")).scalar())


def _set_preserve_order_false(db) -> None:
    with db.session() as conn:
        conn.execute(sa.text("SET GLOBAL preserve_insertion_order = false"))  # lives as long as the open database


def test_sessions_inside_a_hold_share_one_open_database(db):
    with db.held_open():
        _set_preserve_order_false(db)
        assert _preserve_order(db).lower() == "false"        # the same open database: its global setting stayed
    assert _preserve_order(db).lower() == "true"             # released: the next session opened the file afresh


def test_without_a_hold_every_session_opens_the_file(db):
    _set_preserve_order_false(db)
    assert _preserve_order(db).lower() == "true"


def test_other_processes_wait_only_while_the_hold_lasts(db):
    assert other_process(db.path) == "opened"
    with db.held_open(seconds=600):
        _preserve_order(db)
        assert other_process(db.path) == "locked"
        with db.held_open():                                  # nested: one hold, ended by the outer block
            _preserve_order(db)
        assert other_process(db.path) == "locked"
    assert other_process(db.path) == "opened"


def test_a_hold_past_its_budget_gives_the_file_back_at_the_next_session(db):
    with db.held_open(seconds=0.0):
        _set_preserve_order_false(db)                          # budget spent: this session released the anchor
        assert other_process(db.path) == "opened"
        assert _preserve_order(db).lower() == "true"           # and later sessions open the file as usual
    assert other_process(db.path) == "opened"


def test_a_hold_is_released_when_the_block_raises(db):
    try:
        with db.held_open(seconds=600):
            _preserve_order(db)
            raise KeyError("boom")
    except KeyError:
        pass
    assert other_process(db.path) == "opened"


def test_a_hold_ends_by_its_timer_even_when_no_session_follows(db):
    """A page run that holds the file and then does slow work with no storage call (the case that kept a job's
    heartbeats out for 40 s) gives the file back at the deadline, not at its next session."""
    import time

    with db.held_open(seconds=0.3):
        _preserve_order(db)
        deadline, seen = time.monotonic() + 60, "locked"
        while seen == "locked" and time.monotonic() < deadline:   # no session in this thread meanwhile
            seen = other_process(db.path)
        assert seen == "opened"
