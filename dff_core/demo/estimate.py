"""How long the one-click demo study takes, before it is queued: a low-high range per step and in total.

The study is three kinds of step run one after another by the single job worker (``jobs.submit``'s plan):
building the demo dataset, extracting features (model loading + items / items-per-second), and training runs
to early stopping. Every input is a rate measured on this database when one exists, else a default below:
the defaults were measured on the 2-core CPU the project is developed on (demo build 15-25 s; SmolLM2 and
EfficientNet-Lite0 load in 5-15 s; demo runs stop after 15-45 epochs of about 1 s). A range, not a point:
the number of epochs early stopping takes is not known before training, and a newcomer deciding whether to
wait needs the worst case as much as the likely one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

DEMO_BUILD_S = (15.0, 25.0)
DEMO_EPOCHS = (15, 45)
SECONDS_PER_EPOCH = 1.0


@dataclass
class Step:
    """One planned job: what it is and its low/high seconds, and whether the rate behind it was measured here."""

    what: str
    low: float
    high: float
    measured: bool = False


@dataclass
class StudyEstimate:
    """The plan's steps and their total; ``measured`` is true when every rate came from this database."""

    steps: list[Step] = field(default_factory=list)

    @property
    def low(self) -> float:
        return sum(s.low for s in self.steps)

    @property
    def high(self) -> float:
        return sum(s.high for s in self.steps)

    @property
    def measured(self) -> bool:
        return bool(self.steps) and all(s.measured for s in self.steps)

    def to_dict(self) -> dict:
        return {"low_s": round(self.low, 1), "high_s": round(self.high, 1), "measured": self.measured,
                "steps": [{"what": s.what, "low_s": round(s.low, 1), "high_s": round(s.high, 1),
                           "measured": s.measured} for s in self.steps]}


def build_step(measured_s: float | None = None) -> Step:
    """Rendering and importing the demo dataset (a measured earlier build, ±25 %, else ``DEMO_BUILD_S``)."""
    if measured_s:
        return Step("build the demo dataset", 0.75 * measured_s, 1.25 * measured_s, True)
    return Step("build the demo dataset", *DEMO_BUILD_S)


def extraction_step(name: str, seconds: float, load_s: tuple[float, float], measured: bool) -> Step:
    """One extraction: ``seconds`` for the items (``dff_core.estimates.extraction_estimate``) plus model loading."""
    return Step(f"extract {name}", seconds + load_s[0], seconds + load_s[1], measured)


def training_step(runs: int, seconds_per_run: tuple[float, float] | None = None) -> Step:
    """``runs`` training runs one after another; ``seconds_per_run``: the low/high of earlier finished demo runs
    (measured), else ``DEMO_EPOCHS`` × ``SECONDS_PER_EPOCH``."""
    if seconds_per_run:
        low, high = seconds_per_run
        return Step(f"{runs} training runs", runs * low, runs * high, True)
    low, high = (e * SECONDS_PER_EPOCH for e in DEMO_EPOCHS)
    return Step(f"{runs} training runs", runs * low, runs * high)
