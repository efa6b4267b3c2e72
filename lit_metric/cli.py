"""The ``lit-metric`` command line: LightningCLI with model and data in subclass mode.

``lit-metric fit --config configs/digits_triplet.yaml`` (also ``python -m lit_metric``); any
LightningModule / LightningDataModule importable by ``class_path`` works, losses and miners are
``class_path``/``init_args`` objects.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

__all__ = ["LoggedConfigCallback", "MetricCLI", "console_main", "flatten_config", "main"]


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> dotted keys (``{"model.init_args.loss.init_args.margin": 0.2, …}``), the names a W&B
    sweep uses for its parameters. Lists stay values; values that are not plain data become strings."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{name}."))
        elif value is None or isinstance(value, str | int | float | bool | list):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


class LoggedConfigCallback(SaveConfigCallback):
    """LightningCLI's ``config.yaml`` writer, which also sends the full config to the run's logger
    (dotted keys, see :func:`flatten_config`), so a W&B run shows every setting, sweep parameters included."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.logger is not None:
            trainer.logger.log_hyperparams(flatten_config(self.config.clone().as_dict()))


class MetricCLI(LightningCLI):
    """LightningCLI for ``lit_metric``: ``--model`` / ``--data`` take any subclass by ``class_path``."""

    def before_predict(self) -> None:
        """``lit-metric predict`` writes the embeddings: without a prediction writer in the config, add an
        :class:`~lit_metric.callbacks.EmbeddingWriter` writing ``<trainer.default_root_dir>/embeddings.pt``."""
        from pathlib import Path

        from lightning.pytorch.callbacks import BasePredictionWriter

        from lit_metric.callbacks.embedding_writer import EmbeddingWriter

        callbacks = self.trainer.callbacks  # type: ignore[attr-defined]
        if not any(isinstance(cb, BasePredictionWriter) for cb in callbacks):
            path = Path(self.trainer.default_root_dir) / "embeddings.pt"
            callbacks.append(EmbeddingWriter(str(path)))


def main(args: Sequence[str] | None = None) -> MetricCLI:
    """Entry point of ``lit-metric``; ``args`` defaults to ``sys.argv[1:]``."""
    return MetricCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=list(args) if args is not None else sys.argv[1:],
        auto_configure_optimizers=False,
        # every run also logs its config; `config.yaml` in a shared folder (no logger, or W&B's save_dir, as in
        # the trials of a sweep) is replaced by the latest run's instead of aborting the next run
        save_config_callback=LoggedConfigCallback,
        save_config_kwargs={"overwrite": True},
    )


def console_main() -> int:
    """The ``lit-metric`` console script: :func:`main`, then exit status 0 (``main`` returns the CLI object,
    which ``sys.exit`` would print and turn into status 1 — a failed trial for a W&B sweep agent)."""
    main()
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
