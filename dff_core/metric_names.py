"""The ranking metrics every run reports (``dff_core.eval.metrics`` computes them), in the order tables and
pickers show them. Torch-free, so the CLI's parser and the pages can name them without loading a model."""
METRICS = ("NDCG@10", "HR@10", "NDCG@20", "HR@20", "MRR")
