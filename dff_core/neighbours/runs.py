"""A finished run's model: item vectors for neighbour search and per-user top-k recommendations under the
evaluation protocol. ``jobs.neighbours.models`` rebuilds one from a stored run."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.split import SplitData


def item_vectors(model: "torch.nn.Module") -> np.ndarray:
    """``[num_items, hidden]`` float32 of a SASRec in eval mode: its item encoder's output, on the CPU."""
    import torch

    model.eval()
    with torch.no_grad():
        return model.item_encoder().detach().float().cpu().numpy()


@dataclass
class Recommendation:
    user: str
    history: list[int]            # the test input (training items + validation item), oldest first
    test_item: int
    items: list[int]              # top-k, best first, seen items excluded (the test item never)
    scores: list[float]
    test_rank: int                # 0-based pessimistic rank of the test item (as in evaluation)

    @property
    def hit(self) -> bool:
        return self.test_rank < len(self.items)


@dataclass
class RunModel:
    run_id: int
    strategy: str
    model: "torch.nn.Module" = field(repr=False)  # torch is imported when a run is loaded, not with the page
    split: SplitData = field(repr=False)
    _vectors: np.ndarray | None = field(default=None, repr=False)
    _users: dict | None = field(default=None, repr=False)

    def item_vectors(self) -> np.ndarray:
        """``[num_items, hidden]``: the item encoder's output (what SASRec embeds and scores against)."""
        if self._vectors is None:
            self._vectors = item_vectors(self.model)
        return self._vectors

    def user_index(self, user: str | int) -> int:
        if self._users is None:
            self._users = {str(u): i for i, u in enumerate(self.split.user_ids)}
        try:
            return self._users[str(user)]
        except KeyError:
            raise ValueError(f"no user {user!r} in this dataset's split (e.g. "
                             f"{', '.join(map(str, self.split.user_ids[:3]))})") from None

    def recommend(self, user: str | int, k: int = 10) -> Recommendation:
        """Top-``k`` next items for the user's test input; items of that input are excluded except the
        test item itself, ties counted against it -- the protocol of ``dff_core.eval``."""
        import torch

        from dff_core.eval.evaluate import pad_left
        from dff_core.eval.metrics import rank_of_targets

        with torch.no_grad():
            return self._recommend(torch, pad_left, rank_of_targets, user, k)

    def _recommend(self, torch, pad_left, rank_of_targets, user: str | int, k: int) -> Recommendation:
        u = self.user_index(user)
        seq = self.split.test_input(u).astype(np.int64)
        target = int(self.split.test_target[u])
        width = self.model.cfg.max_len
        inp = torch.from_numpy(pad_left(seq, np.array([len(seq)]), width))
        scores = self.model.predict(inp)[0].float()
        rank = int(rank_of_targets(scores[None], np.array([target]), [seq])[0])
        seen = torch.as_tensor(np.setdiff1d(seq, [target]))
        scores[seen] = float("-inf")
        k = min(k, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, k)
        return Recommendation(user=str(self.split.user_ids[u]), history=seq.tolist(), test_item=target,
                              items=top.indices.tolist(), scores=top.values.tolist(), test_rank=rank)
