"""How a training run ended, and whether its numbers can decide a comparison.

A run ends in one of four ways:

* ``early_stopped``: ``patience`` evaluations in a row brought no improvement of the validation metric,
  so the run had converged (as far as early stopping can tell) and its best state is reported;
* ``capped_improving``: the run reached the epoch cap and its best evaluation is among the last
  ``window`` evaluations, where ``window = patience`` (or ``CONVERGENCE_WINDOW`` when early stopping is
  off, ``patience <= 0``). It was still improving when the cap stopped it: its metrics are those of an
  under-trained model and cannot decide a comparison. With ``patience > 0`` every run that reaches the
  cap ends like this, because the trainer checks patience before the cap (a run whose last ``patience``
  evaluations brought nothing is ``early_stopped`` even when that happens at the cap epoch);
* ``capped_converged``: the run reached the cap with no improvement over the last ``window``
  evaluations (only possible with early stopping off);
* ``cancelled``: stopped by the user before it finished.

Evaluations, not epochs, are counted: with ``eval_every = k`` the validation metric is computed every
``k`` epochs and at the cap, and ``patience`` counts those evaluations. A run with no evaluation at all
(nothing to train on) is ``capped_improving``: nothing shows it converged.
"""
from __future__ import annotations

EARLY_STOPPED = "early_stopped"
CAPPED_IMPROVING = "capped_improving"
CAPPED_CONVERGED = "capped_converged"
CANCELLED = "cancelled"
ENDINGS = (EARLY_STOPPED, CAPPED_IMPROVING, CAPPED_CONVERGED, CANCELLED)
LABELS = {EARLY_STOPPED: "early-stopped", CAPPED_IMPROVING: "capped while improving",
          CAPPED_CONVERGED: "capped, converged", CANCELLED: "cancelled"}
# defaults of the CLI, the Train page, sweeps and studies: a generous cap, so runs end by early stopping and
# the cap only bounds the worst case (it costs nothing for a run that converges sooner)
DEFAULT_EPOCHS, DEFAULT_PATIENCE = 200, 5
CONVERGENCE_WINDOW = 5          # evaluations without improvement that count as converged when patience <= 0
# without stored runs to learn from: a cap below this is flagged (MicroLens top-3k runs needed 30+ epochs)
MIN_SENSIBLE_EPOCHS = 30


def window(patience: int) -> int:
    """Evaluations without improvement that show a run converged."""
    return int(patience) if int(patience) > 0 else CONVERGENCE_WINDOW


def classify(*, cancelled: bool, stopped_early: bool, evals_since_best: int | None, patience: int) -> str:
    """The ending of a run. ``evals_since_best``: evaluations after the best one (None: no evaluation)."""
    if cancelled:
        return CANCELLED
    if stopped_early:
        return EARLY_STOPPED
    if evals_since_best is None:
        return CAPPED_IMPROVING
    return CAPPED_CONVERGED if evals_since_best >= window(patience) else CAPPED_IMPROVING


def evaluations_after(best_epoch: int, epochs_run: int, epochs: int, eval_every: int = 1) -> int:
    """How many evaluations the trainer made after ``best_epoch`` (1-based epochs, see the trainer)."""
    every = max(1, int(eval_every))
    return sum(1 for e in range(int(best_epoch) + 1, int(epochs_run) + 1) if e % every == 0 or e == epochs)


def from_summary(epochs_run: int, best_epoch: int | None, epochs: int, patience: int, eval_every: int = 1,
                 stopped_early: bool | None = None, cancelled: bool = False) -> str:
    """The ending of a finished run known only by its summary (stored rows, a runs CSV).

    ``stopped_early`` unknown (None): a run that stopped before the cap, or whose last ``patience``
    evaluations brought nothing, early-stopped (the trainer's own rule)."""
    if cancelled:
        return CANCELLED
    if not best_epoch:
        return classify(cancelled=False, stopped_early=bool(stopped_early), evals_since_best=None,
                        patience=patience)
    after = evaluations_after(best_epoch, epochs_run, epochs, eval_every)
    if stopped_early is None:
        stopped_early = epochs_run < epochs or (patience > 0 and after >= patience)
    return classify(cancelled=False, stopped_early=stopped_early, evals_since_best=after, patience=patience)


def cap_warning(epochs: int, patience: int, needed: list[int] | None = None) -> str | None:
    """A line on what a low epoch cap costs, or None when the cap looks generous.

    ``needed``: epochs that earlier early-stopped runs on the same data took. A cap below the most any of
    them needed (or below ``MIN_SENSIBLE_EPOCHS`` with no history) is likely to stop runs while still
    improving; such runs decide nothing in a comparison or a study verdict."""
    epochs = int(epochs)
    if int(patience) <= 0:
        return (f"Early stopping is off (patience {patience}): every run trains all {epochs} epochs and is reported "
                "at its best validation epoch; a run still improving at the cap counts as under-trained.")
    runs = sorted(int(n) for n in (needed or []) if n)
    if runs:
        most, median = runs[-1], runs[len(runs) // 2]
        if epochs >= most:
            return None
        return (f"An epoch cap of {epochs} is below what runs on this dataset needed to early-stop (median {median}, "
                f"up to {most} epochs over {len(runs)} runs). Runs that hit the cap while still improving are "
                "marked under-trained and cannot decide a comparison; a higher cap costs nothing for runs that "
                "converge sooner.")
    if epochs >= MIN_SENSIBLE_EPOCHS:
        return None
    return (f"An epoch cap of {epochs} is low: runs often need {MIN_SENSIBLE_EPOCHS}+ epochs to early-stop (on "
            "MicroLens top-3,000 about 30–40). Runs that hit the cap while still improving are marked "
            "under-trained and cannot decide a comparison; early stopping ends converged runs sooner anyway.")
