"""Evaluation metrics as torchmetrics classes (DDP-synced, chunked)."""

from lit_metric.metrics.recall_at_k import RecallAtK, recall_at_k

__all__ = ["RecallAtK", "recall_at_k"]
