"""The foreground commands' progress (``extract``, ``train``): a tqdm bar on stderr.

``jobs.workflows`` reports progress as ``progress(fraction, step)`` and lines as ``log(line)``; a
:class:`ProgressBar` is both callbacks. On a terminal it is a live bar (percentage, elapsed, ETA, the step
text). Anywhere else (a log file, CI, a pipe) the same tqdm line is written as a plain line at most every 30 s
(``DFF_PROGRESS_EVERY`` seconds) and once at the end, so a log gets a readable trail instead of thousands of
carriage returns. Log lines go above the bar (``tqdm.write``) and never break it.
"""
from __future__ import annotations

import os
import sys

SCALE = 1000  # the bar counts tenths of a percent
BAR_FORMAT = "{desc}: {percentage:5.1f}%|{bar}| [{elapsed}<{remaining}]{postfix}"


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def quiet_library_bars(stream=None) -> None:
    """Off a terminal, the libraries' own bars (transformers' "Loading weights", the hub's downloads) would write
    carriage-return lines into the log beside ours: turned off there. On a terminal they stay (a large model's
    load is worth watching), drawn below this bar by tqdm."""
    if _isatty(sys.stderr if stream is None else stream):
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when transformers / the hub load
    if "transformers" in sys.modules:  # already loaded: tell it directly
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


class _Lines:
    """A file for tqdm where every redraw (``\\r`` + the bar) becomes one plain line; blank writes and a repeat of
    the line before vanish."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.encoding = getattr(stream, "encoding", None) or "utf-8"
        self.last = ""

    def write(self, text: str) -> int:
        line = text.replace("\r", "").rstrip()
        if line and line != self.last:  # the closing redraw repeats the last line: once is enough
            self.stream.write(line + "\n")
            self.last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


class ProgressBar:
    """``progress(fraction, step)`` and ``log(line)`` for ``jobs.workflows``, drawn with tqdm on ``stream``
    (default stderr). ``every``: the least seconds between two redraws (default 0.1 on a terminal, else
    ``DFF_PROGRESS_EVERY`` or 30)."""

    def __init__(self, desc: str, *, stream=None, every: float | None = None) -> None:
        from tqdm import tqdm

        stream = sys.stderr if stream is None else stream
        tty = _isatty(stream)
        if every is None:
            every = 0.1 if tty else float(os.environ.get("DFF_PROGRESS_EVERY") or 30)
        self._tqdm, self._tty, self._stream = tqdm, tty, stream
        self._file = stream if tty else _Lines(stream)
        self.bar = tqdm(total=SCALE, desc=desc, file=self._file, bar_format=BAR_FORMAT, mininterval=every,
                        miniters=0, dynamic_ncols=tty, ascii=not tty, leave=True)  # off a terminal: no width, no trim
        self.fraction = 0.0
        self.step = ""

    def __call__(self, fraction: float, step: str = "") -> None:
        self.fraction = max(0.0, min(1.0, float(fraction)))
        if step != self.step:
            self.step = step
            self.bar.set_postfix_str(step, refresh=False)
        self.bar.update(round(self.fraction * SCALE) - self.bar.n)  # redraws at most every `every` seconds

    def log(self, line: str) -> None:
        """A line above the bar: on a terminal the bar is cleared and redrawn below it; elsewhere it is just
        written (the next progress line follows in its time)."""
        if self._tty:
            self._tqdm.write(line, file=self._stream)
        else:
            print(line, file=self._stream, flush=True)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
