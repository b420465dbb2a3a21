"""Ranking metrics, the evaluation protocol and the popularity baseline, against hand-computed values."""
import math

import numpy as np
import pytest
import torch

from dff_core.data.split import SplitData, leave_one_out
from dff_core.eval import (EvalInputs, evaluate, metrics_from_ranks, pad_left, popularity_baseline,
                           rank_of_targets)
from dff_core.models import SASRec, SASRecConfig, build_item_encoder


def test_metrics_from_known_ranks():
    m = metrics_from_ranks([0, 1, 9, 10, 25])
    assert m["HR@10"] == pytest.approx(3 / 5)
    assert m["HR@20"] == pytest.approx(4 / 5)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 5)
    assert m["NDCG@20"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11) + 1 / math.log2(12)) / 5)
    assert m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11 + 1 / 26) / 5)
    assert set(m) == {"HR@10", "HR@20", "NDCG@10", "NDCG@20", "MRR"}


def test_metrics_single_ranks_and_custom_ks():
    assert metrics_from_ranks([0]) == {"HR@10": 1.0, "HR@20": 1.0, "NDCG@10": 1.0, "NDCG@20": 1.0, "MRR": 1.0}
    m = metrics_from_ranks([3], ks=(1, 5))
    assert m == pytest.approx({"HR@1": 0.0, "HR@5": 1.0, "NDCG@1": 0.0, "NDCG@5": 1 / math.log2(5), "MRR": 0.25})
    assert metrics_from_ranks([])["NDCG@10"] == 0.0


def test_rank_basic_and_numpy_input():
    scores = np.array([[0.1, 0.5, 0.3, 0.9], [0.9, 0.8, 0.7, 0.6]])
    assert rank_of_targets(scores, [2, 0]).tolist() == [2, 0]
    assert rank_of_targets(torch.tensor(scores), torch.tensor([3, 3])).tolist() == [0, 3]


def test_ties_count_against_target():
    assert rank_of_targets(np.array([[0.5, 0.7, 0.5, 0.1]]), [0]).tolist() == [2]
    assert rank_of_targets(np.array([[0.5, 0.7, 0.5, 0.1]]), [2]).tolist() == [2]
    # a constant scorer gets the worst possible rank, i.e. no credit
    ranks = rank_of_targets(torch.zeros(3, 100), [0, 50, 99])
    assert ranks.tolist() == [99, 99, 99]
    assert metrics_from_ranks(ranks)["HR@20"] == 0.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_raise(bad):
    scores = torch.rand(2, 5)
    scores[1, 3] = bad
    with pytest.raises(ValueError, match="non-finite"):
        rank_of_targets(scores, [0, 0])


def test_excluded_seen_items_but_never_the_target():
    scores = np.array([[0.9, 0.8, 0.1, 0.5]])
    assert rank_of_targets(scores, [3]).tolist() == [2]
    assert rank_of_targets(scores, [3], exclude=[[0, 1]]).tolist() == [0]
    # the target is in the history: still ranked (item 1 stays above it)
    assert rank_of_targets(scores, [3], exclude=[[0, 3]]).tolist() == [1]
    mask = np.array([[True, False, False, True]])
    assert rank_of_targets(scores, [3], exclude=mask).tolist() == [1]
    # excluded items tied with the target do not count against it
    assert rank_of_targets(np.array([[0.5, 0.5, 0.5]]), [1], exclude=[[0, 2]]).tolist() == [0]
    # per-row exclusion lists of different lengths
    scores2 = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    assert rank_of_targets(scores2, [2, 2], exclude=[[], [0]]).tolist() == [2, 1]


def test_pad_left():
    flat = np.array([1, 2, 3, 4, 5, 6])
    out = pad_left(flat, np.array([3, 0, 1, 2]), 2)
    assert out.tolist() == [[3, 4], [0, 0], [0, 5], [6, 7]]


def _tiny_split():
    # 5 items; train counts: item0: 3, item1: 1, item2: 1, item3: 0, item4: 0
    seqs = [np.array([0, 1, 3, 4]), np.array([0, 2, 1, 3]), np.array([0, 4, 3])]
    return leave_one_out(seqs, num_items=5)


def test_popularity_baseline_hand_computed():
    data = _tiny_split()
    assert data.train_item_counts().tolist() == [3, 1, 1, 0, 0]
    val = popularity_baseline(data, "val")
    # u0: seen {0,1}, target 3 (count 0), candidates 2(1), 3(0), 4(0) -> 1 higher + 1 tie = 2
    # u1: seen {0,2}, target 1 (count 1), candidates 1, 3, 4 -> 0
    # u2: seen {0}, target 4 (count 0), candidates 1(1), 2(1), 3(0), 4(0) -> 2 higher + 1 tie = 3
    assert val.ranks.tolist() == [2, 0, 3]
    test = popularity_baseline(data, "test")
    # u0: seen {0,1,3}, target 4 -> candidates 2(1), 4(0) -> 1; u1: seen {0,2,1}, target 3 -> cand 3,4 -> 1
    # u2: seen {0,4}, target 3 -> candidates 1, 2, 3 -> 2
    assert test.ranks.tolist() == [1, 1, 2]
    assert test.metrics["MRR"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 3) / 3)
    # popularity buckets by the target's training count (test targets 4, 3, 3: counts 0 -> all cold)
    assert test.buckets["cold"]["users"] == 3 and test.buckets["warm"]["users"] == 0
    # val targets 3, 1, 4 have counts 0, 1, 0: with threshold 0 user 1 is warm
    val1 = popularity_baseline(data, "val", cold_threshold=0)
    assert val1.buckets["cold"]["users"] == 2 and val1.buckets["warm"]["users"] == 1
    assert val1.buckets["warm"]["metrics"]["HR@10"] == 1.0


def test_test_split_input_includes_validation_item():
    data = _tiny_split()
    inputs = EvalInputs.build(data, "test", max_len=3)
    rows = {int(o): inputs.seqs[i].tolist() for i, o in enumerate(inputs.order)}
    assert rows[0] == [1, 2, 4]   # train [0, 1] + val 3, as model indices (+1)
    assert rows[2] == [0, 1, 5]   # train [0] + val 4, left-padded


def test_evaluate_matches_manual_protocol():
    rng = np.random.default_rng(3)
    n_items = 40
    seqs = [rng.choice(n_items, size=rng.integers(3, 15), replace=False) for _ in range(23)]
    seqs[5] = np.array([7, 8, 7, 9, 7])  # a repeated item: the test target 7 is in the history
    data = leave_one_out(seqs, n_items)
    torch.manual_seed(0)
    cfg = SASRecConfig(hidden=16, blocks=1, heads=2, max_len=6, dropout=0.0)
    model = SASRec(cfg, build_item_encoder("id", n_items, 16))
    for split in ("val", "test"):
        res = evaluate(model, data, split, batch_size=4)  # small batches: several trimmed widths
        expected = []
        for u in range(data.num_users):
            hist = data.val_input(u) if split == "val" else data.test_input(u)
            target = data.val_target[u] if split == "val" else data.test_target[u]
            window = np.zeros(cfg.max_len, dtype=np.int64)
            last = hist[-cfg.max_len:] + 1
            window[cfg.max_len - len(last):] = last
            with torch.no_grad():
                model.eval()
                scores = model.predict(torch.from_numpy(window)[None]).numpy()[0]
            seen = set(hist.tolist()) - {int(target)}
            scores[list(seen)] = -np.inf
            expected.append(int((scores > scores[target]).sum() + (scores == scores[target]).sum() - 1))
        assert res.ranks.tolist() == expected
        assert res.metrics == pytest.approx(metrics_from_ranks(expected))
        assert res.buckets["cold"]["users"] + res.buckets["warm"]["users"] == data.num_users


def test_evaluate_restores_training_mode():
    data = _tiny_split()
    model = SASRec(SASRecConfig(hidden=8, blocks=1, max_len=4), build_item_encoder("id", 5, 8))
    model.train()
    evaluate(model, data, "val")
    assert model.training
