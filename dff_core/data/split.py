"""Leave-one-out split of user sequences, the protocol of SASRec and of the paper.

Items are referred to by their dense 0-based index in the dataset (``items.idx`` in storage), so a
feature tensor ``[num_items, layers, dim]`` lines up with the model's item table row for row.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SplitData:
    """Per-user sequences split leave-one-out.

    ``train[u]`` is the training prefix (everything but the last two items); the validation target is
    the second-last item (predicted from ``train[u]``), the test target the last item (predicted from
    ``train[u] + [val_target[u]]``).
    """

    num_items: int
    user_ids: list[str]
    train: list[np.ndarray]
    val_target: np.ndarray
    test_target: np.ndarray

    @property
    def num_users(self) -> int:
        return len(self.train)

    def val_input(self, u: int) -> np.ndarray:
        return self.train[u]

    def test_input(self, u: int) -> np.ndarray:
        return np.append(self.train[u], self.val_target[u])

    def train_item_counts(self) -> np.ndarray:
        """Interactions per item in the training part only (for popularity buckets and baselines)."""
        counts = np.zeros(self.num_items, dtype=np.int64)
        if self.train:
            np.add.at(counts, np.concatenate(self.train), 1)
        return counts


def leave_one_out(sequences: list[np.ndarray], num_items: int, user_ids: list[str] | None = None,
                  min_len: int = 3) -> SplitData:
    """Split each time-ordered sequence: last = test, second-last = validation, rest = training.

    Users with fewer than ``min_len`` items (at least one training item is needed) are dropped.
    """
    if user_ids is None:
        user_ids = [str(i) for i in range(len(sequences))]
    keep = [i for i, s in enumerate(sequences) if len(s) >= min_len]
    return SplitData(
        num_items=num_items,
        user_ids=[user_ids[i] for i in keep],
        train=[np.asarray(sequences[i][:-2], dtype=np.int64) for i in keep],
        val_target=np.array([sequences[i][-2] for i in keep], dtype=np.int64),
        test_target=np.array([sequences[i][-1] for i in keep], dtype=np.int64),
    )
