"""Lightning callbacks, one per file (importable as ``lit_metric.callbacks.<Name>``)."""

from lit_metric.callbacks.retrieval_report import RetrievalReport, format_recall_table

__all__ = ["RetrievalReport", "format_recall_table"]
