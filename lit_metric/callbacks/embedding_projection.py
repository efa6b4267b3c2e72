"""2-D projection (PCA or t-SNE) of the validation embeddings, coloured by class, as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from lit_metric._validation import check_choice, check_int
from lit_metric.callbacks._figures import ValidationCollector, figure_dir, log_figure, pyplot

__all__ = ["EmbeddingProjection", "project_2d"]


def project_2d(embeddings: np.ndarray, method: Literal["pca", "tsne"] = "pca", seed: int = 0) -> np.ndarray:
    """``(N, D)`` -> ``(N, 2)`` with scikit-learn's PCA or t-SNE (perplexity ``min(30, (N − 1) / 3)``,
    PCA initialisation).

    Raises:
        ValueError: for an unknown ``method`` or fewer than 3 points.
    """
    check_choice(method, "method", ("pca", "tsne"))
    n = embeddings.shape[0]
    if n < 3:
        raise ValueError(f"Expected at least 3 embeddings to project, but got {n}.")
    if embeddings.shape[1] == 1:
        embeddings = np.concatenate([embeddings, np.zeros_like(embeddings)], axis=1)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(embeddings)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(embeddings)


class EmbeddingProjection(L.Callback):
    """After validation, plot the validation embeddings in 2-D (PCA by default, t-SNE on request), one
    colour per class, save ``<log_dir>/embedding_projection/epoch=EEE-step=SSSSSS.png`` and send it to every
    logger that takes images (W&B ``log_image``, TensorBoard ``add_figure``; others: the PNG on disk).

    Embeddings are the validation step's output when it returns them (a ``(B, D)`` tensor or a dict with
    ``"embeddings"``), else the module's ``forward`` on the batch. Only the first validation loader and the
    first ``max_points`` items are used; under DDP, rank 0 plots its own shard. The sanity check is skipped.

    Args:
        method: ``"pca"`` (fast, linear) or ``"tsne"`` (scikit-learn t-SNE, slower, shows clusters).
        every_n_epochs: plot after every n-th validation epoch.
        max_points: at most this many validation items.
        max_legend: show a legend of class ids when there are at most this many classes.
        dirpath: where to write the PNGs (default ``<trainer.log_dir>/embedding_projection``).
        key: the name under which loggers get the image.
        seed: seed of the projection (t-SNE).

    Raises:
        ValueError: for an unknown ``method`` or non-positive counts.

    Example:
        >>> callback = EmbeddingProjection(method="pca", every_n_epochs=5)
        >>> callback.state_dict()
        {'saved': []}
    """

    def __init__(
        self,
        method: Literal["pca", "tsne"] = "pca",
        every_n_epochs: int = 1,
        max_points: int = 2000,
        max_legend: int = 20,
        dirpath: str | Path | None = None,
        key: str = "val/embedding_projection",
        seed: int = 0,
    ) -> None:
        self.method: Literal["pca", "tsne"] = check_choice(method, "method", ("pca", "tsne"))  # type: ignore[assignment]
        self.every_n_epochs = check_int(every_n_epochs, "every_n_epochs", 1)
        self.max_points = check_int(max_points, "max_points", 3)
        self.max_legend = check_int(max_legend, "max_legend", 0)
        self.dirpath = dirpath
        self.key = key
        self.seed = int(seed)
        self.saved: list[str] = []
        self._collector = ValidationCollector(self.max_points)
        self._active = False

    def _due(self, trainer: L.Trainer) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._collector.reset()
        self._active = self._due(trainer) and trainer.is_global_zero

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._active and dataloader_idx == 0:
            self._collector.add(pl_module, outputs, batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active:
            return
        self._active = False
        embeddings, labels, _ = self._collector.result()
        self._collector.reset()
        if embeddings.shape[0] >= 3:
            self._plot(trainer, embeddings, labels)

    @rank_zero_only
    def _plot(self, trainer: L.Trainer, embeddings: Tensor, labels: Tensor) -> None:
        plt = pyplot()
        points = project_2d(embeddings.double().numpy(), self.method, self.seed)
        y = labels.numpy()
        classes = np.unique(y)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "gist_ncar")
        colour_of = {c: cmap(i / max(1, len(classes) - 1)) if len(classes) > 20 else cmap(i) for i, c in enumerate(classes)}
        fig, ax = plt.subplots(figsize=(6.4, 6.0), dpi=100)
        for c in classes:
            mask = y == c
            ax.scatter(points[mask, 0], points[mask, 1], s=10, color=colour_of[c], label=str(c), alpha=0.8, linewidths=0)
        if len(classes) <= self.max_legend:
            ax.legend(title="class", fontsize="small", markerscale=1.5, loc="best", frameon=False)
        ax.set_title(
            f"{self.method.upper() if self.method == 'pca' else 't-SNE'} of {len(y)} validation embeddings, "
            f"{len(classes)} classes — epoch {trainer.current_epoch}"
        )
        ax.set_xticks([])
        ax.set_yticks([])
        fig.tight_layout()
        path = figure_dir(trainer, self.dirpath, "embedding_projection") / (
            f"epoch={trainer.current_epoch:03d}-step={trainer.global_step:06d}.png"
        )
        fig.savefig(path)
        log_figure(trainer, self.key, fig, path)
        plt.close(fig)
        self.saved.append(str(path))

    def state_dict(self) -> dict[str, Any]:
        return {"saved": list(self.saved)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saved = list(state_dict.get("saved", []))
