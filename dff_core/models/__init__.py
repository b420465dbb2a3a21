"""SASRec and its pluggable item encoders (ID, frozen-feature and fusion strategies, DFF)."""
from .item_encoders import (FEATURE_STRATEGIES, GATED_STRATEGIES, STRATEGIES, ItemEncoder,
                            build_item_encoder, prepare_features)
from .sasrec import SASRec, SASRecConfig

__all__ = ["SASRec", "SASRecConfig", "ItemEncoder", "build_item_encoder", "prepare_features",
           "STRATEGIES", "FEATURE_STRATEGIES", "GATED_STRATEGIES"]
