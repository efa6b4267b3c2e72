"""A seconds-long training run on scikit-learn's digits for the callback tests, and fake image loggers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger

from lit_metric import MetricLearningModule
from lit_metric.backbones import ConvNet
from lit_metric.data import DigitsDataModule

__all__ = ["FigureLogger", "ImageLogger", "fit_digits"]


class ImageLogger(Logger):
    """Has ``log_image(key, images, step)`` like ``WandbLogger``."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, list[Any], int | None]] = []

    @property
    def name(self) -> str:
        return "image_logger"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_image(self, key: str, images: list[Any], step: int | None = None) -> None:
        self.images.append((key, images, step))


class _Writer:
    def __init__(self) -> None:
        self.figures: list[tuple[str, Any, int]] = []

    def add_figure(self, tag: str, figure: Any, global_step: int = 0, close: bool = True) -> None:
        self.figures.append((tag, figure, global_step))


class FigureLogger(ImageLogger):
    """Has ``experiment.add_figure`` like ``TensorBoardLogger`` (and no ``log_image``)."""

    log_image = None  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self._writer = _Writer()

    @property
    def experiment(self) -> _Writer:
        return self._writer


def fit_digits(root: Path, callbacks: list[L.Callback], epochs: int = 2, logger: Any = False) -> L.Trainer:
    """2 epochs × 3 steps of a tiny convnet; validation on 128 items of the unseen digits 5–9."""
    L.seed_everything(0, verbose=False)
    model = MetricLearningModule(backbone=ConvNet(1, (8, 16)), embedding_dim=8)
    data = DigitsDataModule(p=5, k=4, batches_per_epoch=3, eval_batch_size=64)
    trainer = L.Trainer(
        max_epochs=epochs,
        limit_val_batches=2,
        num_sanity_val_steps=1,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=root,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, data)
    return trainer
