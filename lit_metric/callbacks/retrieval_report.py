"""Lightning callbacks."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from lit_metric.distances import BaseDistance, CosineSimilarity
from lit_metric.metrics.recall_at_k import recall_at_k

__all__ = ["RetrievalReport", "format_recall_table"]


def format_recall_table(rows: dict[str, dict[str, float]], k: Sequence[int]) -> str:
    """A plain-text table: one row per method, one column per Recall@K (in %)."""
    names = [f"R@{kk}" for kk in k]
    width = max(len(r) for r in rows) + 2
    lines = ["".ljust(width) + "".join(n.rjust(8) for n in names)]
    for method, values in rows.items():
        lines.append(method.ljust(width) + "".join(f"{100 * values[f'recall@{kk}']:8.1f}" for kk in k))
    return "\n".join(lines)


class RetrievalReport(L.Callback):
    """At the end of ``fit``, print Recall@K on the validation set: the trained embeddings beside the
    raw (flattened) inputs, the untrained baseline every metric-learning result should beat.

    Args:
        k: the K values.
        distance: retrieval measure for both rows.
    """

    def __init__(self, k: Sequence[int] = (1, 2, 4, 8), distance: BaseDistance | None = None) -> None:
        self.k = tuple(k)
        self.distance = distance if distance is not None else CosineSimilarity()
        self.results: dict[str, dict[str, float]] = {}

    @torch.no_grad()
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loaders = trainer.val_dataloaders
        datamodule = getattr(trainer, "datamodule", None)
        if loaders is None and datamodule is not None:
            loaders = datamodule.val_dataloader()
        if loaders is None:
            return
        loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
        raw, emb, labels = [], [], []
        was_training = pl_module.training
        pl_module.eval()
        for batch in loader:
            x, y = batch[0], batch[1]
            raw.append(x.flatten(1).float())
            emb.append(pl_module(x.to(pl_module.device)).float().cpu())
            labels.append(y)
        pl_module.train(was_training)
        y_all = torch.cat(labels)
        self.results = {
            "raw inputs (untrained)": _as_floats(recall_at_k(torch.cat(raw), y_all, self.k, self.distance)),
            "trained embeddings": _as_floats(recall_at_k(torch.cat(emb), y_all, self.k, self.distance)),
        }
        self._print(len(y_all))

    @rank_zero_only
    def _print(self, n: int) -> None:
        print(f"\nRecall@K on {n} validation items (leave-one-out, unseen classes):")
        print(format_recall_table(self.results, self.k))


def _as_floats(values: dict[str, Tensor]) -> dict[str, float]:
    return {name: float(v) for name, v in values.items()}
