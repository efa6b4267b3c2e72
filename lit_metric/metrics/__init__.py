"""Evaluation metrics as torchmetrics classes (DDP-synced, chunked)."""

from lit_metric.metrics.clustering_metrics import ClusteringMetrics, cluster_scores
from lit_metric.metrics.few_shot_accuracy import FewShotAccuracy
from lit_metric.metrics.knn_accuracy import KNNAccuracy, knn_accuracy
from lit_metric.metrics.recall_at_k import RecallAtK, recall_at_k
from lit_metric.metrics.retrieval_metrics import RetrievalMetrics
from lit_metric.metrics.verification_metrics import VerificationMetrics, verify_pairs

__all__ = [
    "ClusteringMetrics",
    "FewShotAccuracy",
    "KNNAccuracy",
    "RecallAtK",
    "RetrievalMetrics",
    "VerificationMetrics",
    "cluster_scores",
    "knn_accuracy",
    "recall_at_k",
    "verify_pairs",
]
