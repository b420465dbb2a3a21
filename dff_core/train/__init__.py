"""Training: SASRec + item encoder, all-position softmax CE, early stopping, checkpoint/resume."""
from .trainer import TrainConfig, TrainingBatches, TrainResult, build_model, train

__all__ = ["TrainConfig", "TrainResult", "TrainingBatches", "build_model", "train"]
