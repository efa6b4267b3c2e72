"""The ``lit-metric`` command line: LightningCLI with model and data in subclass mode.

``lit-metric fit --config configs/digits_triplet.yaml`` (also ``python -m lit_metric``); any
LightningModule / LightningDataModule importable by ``class_path`` works, losses and miners are
``class_path``/``init_args`` objects.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import lightning as L
from lightning.pytorch.cli import LightningCLI

__all__ = ["MetricCLI", "main"]


class MetricCLI(LightningCLI):
    """LightningCLI for ``lit_metric``: ``--model`` / ``--data`` take any subclass by ``class_path``."""

    def before_predict(self) -> None:
        """``lit-metric predict`` writes the embeddings: without a prediction writer in the config, add an
        :class:`~lit_metric.callbacks.EmbeddingWriter` writing ``<trainer.default_root_dir>/embeddings.pt``."""
        from pathlib import Path

        from lightning.pytorch.callbacks import BasePredictionWriter

        from lit_metric.callbacks.embedding_writer import EmbeddingWriter

        if not any(isinstance(cb, BasePredictionWriter) for cb in self.trainer.callbacks):
            path = Path(self.trainer.default_root_dir) / "embeddings.pt"
            self.trainer.callbacks.append(EmbeddingWriter(str(path)))


def main(args: Sequence[str] | None = None) -> MetricCLI:
    """Entry point of ``lit-metric``; ``args`` defaults to ``sys.argv[1:]``."""
    return MetricCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=list(args) if args is not None else sys.argv[1:],
        auto_configure_optimizers=False,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
