"""Lightning callbacks, one per file (importable as ``lit_metric.callbacks.<Name>``)."""

from lit_metric.callbacks.class_mean_init import ClassMeanInit
from lit_metric.callbacks.embedding_projection import EmbeddingProjection, project_2d
from lit_metric.callbacks.embedding_writer import EmbeddingWriter, write_embeddings
from lit_metric.callbacks.retrieval_grid import RetrievalGrid, nearest_neighbours
from lit_metric.callbacks.retrieval_report import RetrievalReport, format_recall_table

__all__ = [
    "ClassMeanInit",
    "EmbeddingProjection",
    "EmbeddingWriter",
    "RetrievalGrid",
    "RetrievalReport",
    "format_recall_table",
    "nearest_neighbours",
    "project_2d",
    "write_embeddings",
]
