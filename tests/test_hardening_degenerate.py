"""Degenerate features never look useful: a layer without variance scores as no signal and says why, ties between
neighbours are broken at random (seeded) and counted, and neighbour search refuses a set with no variance."""
from __future__ import annotations

import numpy as np
import pytest

from dff_core.neighbours.index import build_index
from dff_core.probes import NO_VARIANCE, layer_scores

ITEMS, DIM = 300, 16


def _histories(seed: int = 0) -> list[np.ndarray]:
    """Users who watch items of one topic (item % 10) in a row: co-watches follow the topic."""
    rng = np.random.default_rng(seed)
    out = []
    for u in range(400):
        topic = u % 10
        out.append(rng.choice(np.arange(topic, ITEMS, 10), size=8, replace=False))
    return out


def _layers() -> np.ndarray:
    rng = np.random.default_rng(1)
    topics = rng.normal(size=(10, DIM))
    feats = np.zeros((ITEMS, 5, DIM), dtype=np.float32)
    feats[:, 1] = 3.5                                                   # constant
    feats[:, 2] = rng.normal(size=(ITEMS, DIM))                          # noise
    feats[:, 3] = topics[np.arange(ITEMS) % 10] + 0.1 * rng.normal(size=(ITEMS, DIM))   # knows the topics
    feats[:, 4] = (np.arange(ITEMS) % 2)[:, None] * np.ones(DIM)         # two distinct vectors: ties everywhere
    return feats                                                          # layer 0 stays all zeros


def _scores(seed: int = 0):
    feats = _layers()
    return layer_scores(_histories(), ITEMS, np.ones(ITEMS, dtype=bool), 5, DIM,
                        lambda ids: feats[:, ids].astype(np.float16), name="synthetic", seed=seed)


def test_a_layer_without_variance_scores_as_no_signal_and_says_why():
    out = _scores()
    assert out.loc[0, "lift"] == pytest.approx(1.0) and out.loc[1, "lift"] == pytest.approx(1.0)
    assert out.loc[0, "note"] == NO_VARIANCE and out.loc[1, "note"] == NO_VARIANCE
    assert out.loc[3, "lift"] > 3 and out.loc[3, "note"] == ""
    # no degenerate layer ranks above the informative one, nor clearly above noise
    assert out["lift"].idxmax() == 3
    assert max(out.loc[0, "lift"], out.loc[1, "lift"]) <= out.loc[2, "lift"] + 0.1


def test_ties_are_broken_at_random_seeded_and_reported():
    first, again, other = _scores(0), _scores(0), _scores(1)
    assert first.loc[4, "ties"] == first.attrs["items"]        # every item ties at its 10th neighbour
    assert first.loc[4, "note"].startswith(f"{first.attrs['items']} of {first.attrs['items']} items had a tie")
    assert first.loc[4, "score"] == again.loc[4, "score"]       # seeded
    assert first.loc[3, "ties"] == 0
    # index order would pick the same neighbours for every seed; a random order does not
    assert first.loc[4, "score"] != other.loc[4, "score"] or first.loc[2, "score"] != other.loc[2, "score"]


@pytest.mark.parametrize("value, what", [(0.0, "all zeros"), (0.25, "one constant vector")])
def test_neighbours_refuse_a_set_without_variance_and_say_why(value, what):
    vectors = np.full((ITEMS, DIM), value, dtype=np.float32)
    with pytest.raises(ValueError) as err:
        build_index(vectors, np.ones(ITEMS, dtype=bool))
    assert str(err.value).startswith(f"all {ITEMS} stored vectors here are {what}: a representation without variance")
