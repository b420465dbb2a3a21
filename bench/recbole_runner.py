"""Run RecBole's SASRec on an atomic ``.inter`` file and print one JSON line with its results.

Executed by ``bench_recbole.py`` with the Python of a separate virtualenv that has ``recbole`` installed
(RecBole pins an older numpy, so it never enters the project's own environment).

    python recbole_runner.py DATA_DIR DATASET EPOCHS PATIENCE SEED
"""
from __future__ import annotations

import json
import sys
import time


def main() -> None:
    data_dir, dataset, epochs, patience, seed = sys.argv[1:6]
    import os

    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # RecBole's own checkpoints hold a config
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
        "eval_batch_size": 4096, "device": "cpu", "use_gpu": False, "seed": int(seed), "reproducibility": True,
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
    t0 = time.perf_counter()
    best_valid, best_valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_seconds = time.perf_counter() - t0
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    print(json.dumps({"users": int(data.user_num - 1), "items": int(data.item_num - 1),
                      "train_samples": len(train_data.dataset), "epochs": len(epoch_seconds),
                      "epoch_seconds": epoch_seconds, "fit_seconds": fit_seconds,
                      "val": {k: float(v) for k, v in best_valid_result.items()},
                      "test": {k: float(v) for k, v in test.items()}}))


if __name__ == "__main__":
    main()
