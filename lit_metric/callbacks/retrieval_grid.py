"""Queries with their top-k validation neighbours, right/wrong marked, as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from lit_metric._validation import check_int
from lit_metric.callbacks._figures import ValidationCollector, figure_dir, log_figure, pyplot
from lit_metric.distances import BaseDistance, CosineSimilarity

__all__ = ["RetrievalGrid", "nearest_neighbours"]

_RIGHT = (0.10, 0.70, 0.20)
_WRONG = (0.85, 0.10, 0.10)
_QUERY = (0.15, 0.35, 0.85)


def nearest_neighbours(
    queries: Tensor, embeddings: Tensor, k: int, distance: BaseDistance, query_index: Tensor
) -> Tensor:
    """``(Q, k)`` indices of each query's ``k`` nearest items of ``embeddings``, the query itself excluded
    (``query_index[i]`` is query i's row in ``embeddings``)."""
    scores = distance.to_dissimilarity(distance.pairwise(queries, embeddings)).float()
    scores[torch.arange(len(query_index)), query_index] = float("inf")
    return scores.topk(min(k, embeddings.shape[0] - 1), dim=1, largest=False).indices


class RetrievalGrid(L.Callback):
    """After validation, draw ``num_queries`` validation images (one row each) followed by their ``k``
    nearest validation neighbours (leave-one-out), each neighbour framed green when it has the query's class
    and red when not; save ``<log_dir>/retrieval_grid/epoch=EEE-step=SSSSSS.png`` and send it to every
    logger that takes images (as :class:`~lit_metric.callbacks.EmbeddingProjection` does).

    Queries are drawn with ``seed`` among items whose class has another member, the same ones every epoch
    (so the grids of successive epochs compare). Images are kept as ``thumbnail``-pixel uint8 copies, each
    rescaled to its own range for display (no need to know the normalisation). Only the first validation
    loader and the first ``max_items`` items are used; under DDP, rank 0 uses its own shard.

    Args:
        num_queries: rows of the grid.
        k: neighbours per query.
        every_n_epochs: draw after every n-th validation epoch.
        max_items: gallery size limit (items kept in memory as thumbnails).
        thumbnail: longer side of the kept thumbnails, in pixels.
        distance: retrieval measure (default cosine similarity).
        dirpath: where to write the PNGs (default ``<trainer.log_dir>/retrieval_grid``).
        key: the name under which loggers get the image.
        seed: seed of the query choice.

    Raises:
        ValueError: for non-positive counts.

    Example:
        >>> RetrievalGrid(num_queries=4, k=3).state_dict()
        {'saved': [], 'recall_at_1': []}
    """

    def __init__(
        self,
        num_queries: int = 8,
        k: int = 5,
        every_n_epochs: int = 1,
        max_items: int = 5000,
        thumbnail: int = 64,
        distance: BaseDistance | None = None,
        dirpath: str | Path | None = None,
        key: str = "val/retrieval_grid",
        seed: int = 0,
    ) -> None:
        self.num_queries = check_int(num_queries, "num_queries", 1)
        self.k = check_int(k, "k", 1)
        self.every_n_epochs = check_int(every_n_epochs, "every_n_epochs", 1)
        self.max_items = check_int(max_items, "max_items", 2)
        self.thumbnail = check_int(thumbnail, "thumbnail", 8)
        self.distance = distance if distance is not None else CosineSimilarity()
        self.dirpath = dirpath
        self.key = key
        self.seed = int(seed)
        self.saved: list[str] = []
        self.recall_at_1: list[float] = []  # share of the drawn queries whose first neighbour is right
        self._collector = ValidationCollector(self.max_items, keep_inputs=True, thumbnail=self.thumbnail)
        self._active = False

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._collector.reset()
        due = not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        self._active = due and trainer.is_global_zero

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
        embeddings, labels, images = self._collector.result()
        self._collector.reset()
        if images is not None and embeddings.shape[0] >= 2:
            self._draw(trainer, embeddings, labels, images)

    def choose_queries(self, labels: Tensor) -> Tensor:
        """Indices of the queries: drawn with ``seed`` among items whose class has another member."""
        _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        answerable = torch.nonzero(counts[inverse] > 1).flatten()
        if answerable.numel() == 0:
            answerable = torch.arange(labels.numel())
        rng = np.random.default_rng(self.seed)
        picked = rng.choice(answerable.numel(), size=min(self.num_queries, answerable.numel()), replace=False)
        return answerable[torch.as_tensor(np.sort(picked))]

    @rank_zero_only
    def _draw(self, trainer: L.Trainer, embeddings: Tensor, labels: Tensor, images: Tensor) -> None:
        plt = pyplot()
        queries = self.choose_queries(labels)
        with torch.no_grad():
            neighbours = nearest_neighbours(embeddings[queries], embeddings, self.k, self.distance.cpu(), queries)
        correct = labels[neighbours] == labels[queries].unsqueeze(1)
        self.recall_at_1.append(float(correct[:, 0].float().mean()))
        rows, cols = len(queries), 1 + neighbours.shape[1]
        fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.4), dpi=100, squeeze=False)
        for r, q in enumerate(queries.tolist()):
            _show(axes[r, 0], images[q], _QUERY, f"query {int(labels[q])}")
            for c, n in enumerate(neighbours[r].tolist(), start=1):
                ok = bool(correct[r, c - 1])
                _show(axes[r, c], images[n], _RIGHT if ok else _WRONG, f"{c}: {int(labels[n])}")
        fig.suptitle(
            f"Top-{neighbours.shape[1]} neighbours of {rows} validation queries, epoch {trainer.current_epoch}\n"
            "green = same class, red = other class",
            fontsize="small",
        )
        fig.tight_layout()
        path = figure_dir(trainer, self.dirpath, "retrieval_grid") / (
            f"epoch={trainer.current_epoch:03d}-step={trainer.global_step:06d}.png"
        )
        fig.savefig(path)
        log_figure(trainer, self.key, fig, path)
        plt.close(fig)
        self.saved.append(str(path))

    def state_dict(self) -> dict[str, Any]:
        return {"saved": list(self.saved), "recall_at_1": list(self.recall_at_1)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saved = list(state_dict.get("saved", []))
        self.recall_at_1 = list(state_dict.get("recall_at_1", []))


def _show(ax: Any, image: Tensor, colour: tuple[float, float, float], title: str) -> None:
    """An image with a thick coloured frame."""
    array = image.numpy()
    h, w = array.shape[:2]
    pad = max(2, round(0.07 * max(h, w)))
    framed = np.empty((h + 2 * pad, w + 2 * pad, 3), dtype=np.uint8)
    framed[:] = (np.array(colour) * 255).astype(np.uint8)
    framed[pad : pad + h, pad : pad + w] = array
    ax.imshow(framed, interpolation="nearest")
    ax.set_title(title, fontsize=7, color=colour)
    ax.axis("off")
