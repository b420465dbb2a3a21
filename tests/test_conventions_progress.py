"""The foreground ``train`` and ``extract`` show a tqdm progress bar, not a bare carriage-return line: on a
terminal a live bar; elsewhere (a log, CI) plain tqdm lines, throttled (``DFF_PROGRESS_EVERY`` seconds, 0 here so
every update shows), with the values rising to 100 % and the log lines between them."""
from __future__ import annotations

import io
import re

import pytest

import cli
from cli.progress import ProgressBar
from data_helpers import write_generic

LINE = re.compile(r"^(?P<desc>[^:]+):\s+(?P<pct>\d+\.\d)%\|(?P<bar>[ #0-9]{10})\| \[[^\]]+\](?:, (?P<step>.*))?$")


def _bar_lines(text: str, desc: str) -> list[tuple[float, str]]:
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m and m["desc"] == desc:
            out.append((float(m["pct"]), m["step"] or ""))
    return out


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_the_bar_is_plain_throttled_lines(monkeypatch):
    monkeypatch.setenv("DFF_PROGRESS_EVERY", "0")
    log = io.StringIO()
    with ProgressBar("job", stream=log) as bar:
        for i in range(5):
            bar(i / 4, f"step {i}/4")
            if i == 2:
                bar.log("halfway")
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    values = _bar_lines(text, "job")
    assert [v for v, _ in values] == [0.0, 0.0, 25.0, 50.0, 75.0, 100.0]  # the first is the bar's opening line
    assert values[-1] == (100.0, "step 4/4") and "halfway" in lines
    assert lines.index("halfway") == lines.index(next(x for x in lines if "step 2/4" in x)) + 1
    assert len(lines) == len(values) + 1  # the closing redraw repeats nothing

    monkeypatch.setenv("DFF_PROGRESS_EVERY", "3600")  # a real log: the opening line, then only the close
    quiet = io.StringIO()
    with ProgressBar("job", stream=quiet) as bar:
        for i in range(1001):
            bar(i / 1000, f"step {i}")
    assert [v for v, _ in _bar_lines(quiet.getvalue(), "job")] == [0.0, 100.0]


def test_on_a_terminal_it_is_a_live_bar():
    term = Terminal()
    with ProgressBar("job", stream=term, every=0) as bar:
        bar(0.5, "half")
        bar.log("a line")
        bar(1.0, "done")
    text = term.getvalue()
    assert "\r" in text and "a line\n" in text  # redrawn in place; the log line above it
    frames = [f for f in text.split("\r") if f.strip()]
    assert any(re.search(r" 50\.0%\|.*half", f) for f in frames)
    assert re.search(r"100\.0%\|█+\|.*done", frames[-1])


@pytest.fixture
def small_db(db, tmp_path):
    from jobs.datasets import import_generic

    import_generic(db, "d", *write_generic(tmp_path / "d", n_users=30, n_items=12, seq=6))
    return db


def test_train_reports_progress_with_tqdm(small_db, monkeypatch, capsys):
    monkeypatch.setenv("DFF_PROGRESS_EVERY", "0")
    assert cli.main(["--db", str(small_db.path), "train", "--dataset", "d", "--strategy", "id", "--epochs", "2",
                     "--patience", "0", "--hidden", "8", "--threads", "1"]) == 0
    out = capsys.readouterr()
    assert "\r" not in out.err
    values = _bar_lines(out.err, "train id")
    pcts = [v for v, _ in values]
    assert len(values) >= 4 and pcts == sorted(pcts) and pcts[-1] == 100.0
    assert any(step.startswith("epoch 1 step ") and " loss " in step for _, step in values)
    assert any(step.startswith("epoch 2 done") for _, step in values)
    assert sum(line.startswith("epoch 1: loss ") for line in out.err.splitlines()) == 1  # the log line, whole
    assert out.out.startswith("run ") and "test HR@10" in out.out


def test_train_json_keeps_stderr_to_the_log(small_db, capsys):
    assert cli.main(["--db", str(small_db.path), "train", "--dataset", "d", "--strategy", "id", "--epochs", "1",
                     "--patience", "0", "--hidden", "8", "--threads", "1", "--json"]) == 0
    err = capsys.readouterr().err
    assert _bar_lines(err, "train id") == [] and "epoch 1: loss " in err


def test_extract_reports_progress_with_tqdm(small_db, monkeypatch, capsys):
    import dff_core.extraction.runner as runner

    monkeypatch.setenv("DFF_PROGRESS_EVERY", "0")
    monkeypatch.setattr(runner, "PROGRESS_EVERY_S", 0.0)   # every batch reports, however fast the machine
    assert cli.main(["--db", str(small_db.path), "extract", "--dataset", "d", "--backbone", "minilm", "--name", "m",
                     "--inputs", "title", "--batch-size", "4", "--dtype", "float32", "--device", "cpu"]) == 0
    out = capsys.readouterr()
    assert "\r" not in out.err
    values = _bar_lines(out.err, "extract m")
    pcts = [v for v, _ in values]
    assert pcts == sorted(pcts) and pcts[-1] == 100.0 and len(set(pcts)) >= 3
    assert values[-1][1].startswith("12/12 items")
    assert out.out.startswith("feature set 'm'")
