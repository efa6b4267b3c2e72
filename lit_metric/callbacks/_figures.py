"""Shared helpers of the plotting callbacks (private): where figures go, how loggers get them, and the
validation outputs they collect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from lit_metric.module import unpack_batch

__all__ = ["ValidationCollector", "figure_dir", "log_figure", "pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (works without a display).

    Raises:
        ImportError: when matplotlib is not installed (with the pip command).
    """
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover
        raise ImportError("The plotting callbacks need matplotlib: `pip install matplotlib`.") from err
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def figure_dir(trainer: L.Trainer, dirpath: str | Path | None, name: str) -> Path:
    """``dirpath``, or ``<trainer.log_dir>/<name>`` (the logger's run folder, else ``default_root_dir``)."""
    base = Path(dirpath) if dirpath is not None else Path(trainer.log_dir or trainer.default_root_dir) / name
    base.mkdir(parents=True, exist_ok=True)
    return base


def log_figure(trainer: L.Trainer, key: str, figure: Any, path: Path) -> list[str]:
    """Send a saved figure to every logger that takes images; returns the names of those that did.

    ``log_image(key, images=[path], step=…)`` where a logger has it (``WandbLogger``);
    ``experiment.add_figure(key, figure, global_step)`` where the experiment has it (TensorBoard's
    ``SummaryWriter``); other loggers just keep the PNG on disk.
    """
    used = []
    step = trainer.global_step
    for logger in trainer.loggers:
        log_image = getattr(logger, "log_image", None)
        if callable(log_image):
            log_image(key=key, images=[str(path)], step=step)
            used.append(type(logger).__name__)
            continue
        experiment = getattr(logger, "experiment", None)
        add_figure = getattr(experiment, "add_figure", None)
        if callable(add_figure):
            add_figure(key, figure, global_step=step, close=False)
            used.append(type(logger).__name__)
    return used


class ValidationCollector:
    """Accumulates ``(embeddings, labels[, inputs])`` of the first validation loader, up to ``max_items``.

    The embeddings are the validation step's output when it returns them (a ``(B, D)`` tensor or a dict
    with ``"embeddings"``), else ``pl_module(x)`` is computed once more under ``no_grad``.
    """

    def __init__(self, max_items: int, keep_inputs: bool = False, thumbnail: int = 64) -> None:
        self.max_items = max_items
        self.keep_inputs = keep_inputs
        self.thumbnail = thumbnail
        self.reset()

    def reset(self) -> None:
        self.embeddings: list[Tensor] = []
        self.labels: list[Tensor] = []
        self.inputs: list[Tensor] = []
        self.count = 0

    def add(self, pl_module: L.LightningModule, outputs: Any, batch: Any) -> None:
        if self.count >= self.max_items:
            return
        x, y, _ = unpack_batch(batch)
        if y is None:
            return
        take = min(self.max_items - self.count, y.shape[0])
        z = None
        if isinstance(outputs, Tensor) and outputs.ndim == 2 and outputs.shape[0] == y.shape[0]:
            z = outputs
        elif isinstance(outputs, dict) and isinstance(outputs.get("embeddings"), Tensor):
            z = outputs["embeddings"]
        if z is None:
            with torch.no_grad():
                z = pl_module(x[:take])
        self.embeddings.append(z[:take].detach().float().cpu())
        self.labels.append(y[:take].detach().cpu())
        if self.keep_inputs:
            self.inputs.append(_thumbnails(x[:take].detach(), self.thumbnail))
        self.count += take

    def result(self) -> tuple[Tensor, Tensor, Tensor | None]:
        emb = torch.cat(self.embeddings) if self.embeddings else torch.empty(0, 0)
        labels = torch.cat(self.labels) if self.labels else torch.empty(0, dtype=torch.long)
        inputs = torch.cat(self.inputs) if self.inputs else None
        return emb, labels, inputs


def _thumbnails(x: Tensor, size: int) -> Tensor:
    """Images ``(B, C, H, W)`` (any normalisation) -> ``(B, H', W', 3)`` uint8, longer side <= ``size``, each
    rescaled to its own min–max range for display."""
    x = x.float().cpu()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"Expected image batches (B, C, H, W) for the retrieval grid, but got shape {tuple(x.shape)}.")
    h, w = x.shape[-2:]
    scale = min(1.0, size / max(h, w))
    if scale < 1:
        x = torch.nn.functional.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        x = x[:, :3] if x.shape[1] > 3 else x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp_min(1e-8)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
