"""Run RecBole's SASRec on an atomic ``.inter`` file and print one JSON line with its results.

Executed by ``bench_recbole.py`` with the Python of a separate virtualenv that has ``recbole`` installed
(RecBole pins an older numpy, so it never enters the project's own environment).

    python recbole_runner.py DATA_DIR DATASET EPOCHS PATIENCE SEED [DEVICE [CAP_SECONDS]]

DEVICE is ``cpu`` (default, 2 threads) or ``cuda``. With CAP_SECONDS a run still going after that much wall time
stops at the end of its next validation and is tested with its best checkpoint ("capped": a bound, not a
converged result). The JSON line also holds the validation NDCG@10 and wall seconds at the end of every epoch,
so time to the best validation epoch compares with ``bench_time_to_quality.py``.
"""
from __future__ import annotations

import json
import sys
import time


def write_atomic(split, folder, name: str) -> None:
    """A split (``dff_core.data.split.SplitData``) as RecBole's atomic ``FOLDER/NAME/NAME.inter``, each user's
    sequence in order with its position as the timestamp (RecBole's ``order: TO`` keeps it)."""
    import numpy as np
    from pathlib import Path

    folder = Path(folder)
    (folder / name).mkdir(parents=True, exist_ok=True)
    with open(folder / name / f"{name}.inter", "w") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u in range(split.num_users):
            for t, item in enumerate(np.append(split.train[u], [split.val_target[u], split.test_target[u]])):
                fh.write(f"u{u}\ti{item}\t{t}\n")


class Capped(Exception):
    """Raised from RecBole's epoch callback once the wall-clock cap has passed (after it saved the best model)."""


def numpy2_aliases() -> None:
    """RecBole 1.2.1's ``compatibility_settings`` reads aliases NumPy 2 removed (``np.float_`` ...); give them
    back so it runs on an image that only has NumPy 2 (a GPU machine's)."""
    import numpy as np

    for old, new in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if old not in np.__dict__:
            setattr(np, old, new)


def main() -> None:
    data_dir, dataset, epochs, patience, seed = sys.argv[1:6]
    device = sys.argv[6] if len(sys.argv) > 6 else "cpu"
    cap_s = float(sys.argv[7]) if len(sys.argv) > 7 else float("inf")
    import os

    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # RecBole's own checkpoints hold a config
    numpy2_aliases()
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.set_num_threads(2)
    config = Config(model="SASRec", dataset=dataset, config_dict={
        "data_path": data_dir, "checkpoint_dir": f"{data_dir}/saved",
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50, "n_layers": 2, "n_heads": 1, "hidden_size": 64, "inner_size": 64,
        "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "hidden_act": "relu", "loss_type": "CE",
        "train_neg_sample_args": None, "epochs": int(epochs), "train_batch_size": 256,
        "learning_rate": 1e-3, "stopping_step": int(patience), "eval_step": 1,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "NDCG", "MRR"], "topk": [10, 20], "valid_metric": "NDCG@10",
        "eval_batch_size": 4096, "gpu_id": "" if device == "cpu" else "0", "seed": int(seed), "reproducibility": True,
        "worker": 0, "show_progress": False, "log_wandb": False,
    })
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    model = SASRec(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)

    epoch_seconds: list[float] = []
    original = trainer._train_epoch

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        epoch_seconds.append(time.perf_counter() - t0)
        return out

    trainer._train_epoch = timed
    curve: list[tuple[float, float]] = []  # (validation NDCG@10, wall seconds since fit began) per epoch

    def after_validation(epoch: int, score: float) -> None:
        curve.append((float(score), time.perf_counter() - t0))
        if curve[-1][1] > cap_s:
            raise Capped

    t0 = time.perf_counter()
    capped = False
    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=after_validation)
    except Capped:
        capped = True
    fit_seconds = time.perf_counter() - t0
    best_valid_result = trainer.best_valid_result
    best = max(range(len(curve)), key=lambda i: (curve[i][0], i))  # RecBole keeps the last of equal scores
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    print(json.dumps({"users": int(data.user_num - 1), "items": int(data.item_num - 1),
                      "train_samples": len(train_data.dataset), "epochs": len(epoch_seconds),
                      "epoch_seconds": epoch_seconds, "fit_seconds": fit_seconds, "capped": capped,
                      "val_curve": [round(v, 5) for v, _ in curve], "best_epoch": best + 1,
                      "to_best_s": curve[best][1], "device": device,
                      "val": {k: float(v) for k, v in best_valid_result.items()},
                      "test": {k: float(v) for k, v in test.items()}}))


if __name__ == "__main__":
    main()
