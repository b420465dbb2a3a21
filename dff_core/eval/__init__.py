"""Full-ranking evaluation: metrics, model evaluation with popularity buckets, popularity baseline."""
from .evaluate import EvalInputs, EvalResult, evaluate, pad_left, popularity_baseline, popularity_buckets
from .metrics import metrics_from_ranks, rank_of_targets

__all__ = ["rank_of_targets", "metrics_from_ranks", "evaluate", "popularity_baseline", "popularity_buckets",
           "EvalResult", "EvalInputs", "pad_left"]
