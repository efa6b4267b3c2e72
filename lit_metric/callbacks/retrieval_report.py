"""Lightning callbacks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    """Print Recall@K on the validation set at the end of ``fit``: raw (flattened) inputs, the same network
    before training, and the trained embeddings — the baselines every metric-learning result should beat.

    The untrained row is measured at ``on_fit_start``.  Under DDP each rank sees its shard of the validation
    loader; the table is printed by rank 0 for its shard.

    Args:
        k: the K values.
        distance: retrieval measure for every row.
    """

    def __init__(self, k: Sequence[int] = (1, 2, 4, 8), distance: BaseDistance | None = None) -> None:
        self.k = tuple(k)
        self.distance = distance if distance is not None else CosineSimilarity()
        self.results: dict[str, dict[str, float]] = {}

    @staticmethod
    def _loader(trainer: L.Trainer) -> Any:
        loaders = trainer.val_dataloaders
        datamodule = getattr(trainer, "datamodule", None)
        if loaders is None and datamodule is not None:
            loaders = datamodule.val_dataloader()
        return loaders[0] if isinstance(loaders, list | tuple) else loaders

    @torch.no_grad()
    def _embed(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[Tensor, Tensor, Tensor] | None:
        loader = self._loader(trainer)
        if loader is None:
            return None
        raw, emb, labels = [], [], []
        was_training = pl_module.training
        pl_module.eval()
        for batch in loader:
            x, y = batch[0], batch[1]
            raw.append(x.flatten(1).float())
            emb.append(pl_module(x.to(pl_module.device)).float().cpu())
            labels.append(y)
        pl_module.train(was_training)
        return torch.cat(raw), torch.cat(emb), torch.cat(labels)

    def _recall(self, emb: Tensor, labels: Tensor) -> dict[str, float]:
        return {name: float(v) for name, v in recall_at_k(emb, labels, self.k, self.distance).items()}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        out = self._embed(trainer, pl_module)
        self.results = {}
        if out is not None:
            raw, emb, labels = out
            self.results["raw inputs"] = self._recall(raw, labels)
            self.results["untrained network"] = self._recall(emb, labels)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        out = self._embed(trainer, pl_module)
        if out is None:
            return
        raw, emb, labels = out
        self.results.setdefault("raw inputs", self._recall(raw, labels))
        self.results["trained embeddings"] = self._recall(emb, labels)
        self._print(len(labels))

    @rank_zero_only
    def _print(self, n: int) -> None:
        print(f"\nRecall@K (%) on {n} validation items (leave-one-out retrieval, classes unseen in training):")
        print(format_recall_table(self.results, self.k))
