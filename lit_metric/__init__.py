"""lit_metric: deep metric learning for PyTorch Lightning.

Importing ``lit_metric`` never imports lightly or wandb (they load lazily where used).
"""

from lit_metric import checkpoint, distances, distributed, functional, losses, metrics, miners
from lit_metric.distances import CosineSimilarity, DotProductSimilarity, EuclideanDistance
from lit_metric.index import EmbeddingIndex
from lit_metric.module import MetricLearningModule
from lit_metric.ssl import SelfSupervisedModule
from lit_metric.whitening import WithinClassWhitening

__version__ = "0.1.0"

__all__ = [
    "CosineSimilarity",
    "DotProductSimilarity",
    "EmbeddingIndex",
    "EuclideanDistance",
    "MetricLearningModule",
    "SelfSupervisedModule",
    "WithinClassWhitening",
    "__version__",
    "checkpoint",
    "distances",
    "distributed",
    "functional",
    "losses",
    "metrics",
    "miners",
]
