"""EmbeddingWriter: write the embeddings of ``trainer.predict`` (``lit-metric predict``) with labels and ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from lit_metric import distributed

__all__ = ["EmbeddingWriter", "write_embeddings"]


def write_embeddings(path: str | Path, data: dict[str, Tensor]) -> Path:
    """Write ``{"embeddings", "ids", ["labels"]}`` in the format chosen by ``path`` (see :class:`EmbeddingWriter`)."""
    path = Path(path)
    arrays = {name: t.detach().cpu() for name, t in data.items()}
    if path.suffix == ".pt":
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(arrays, path)
    elif path.suffix == ".npz":
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{name: t.numpy() for name, t in arrays.items()})  # type: ignore[arg-type]
    elif path.suffix == "":
        path.mkdir(parents=True, exist_ok=True)
        for name, t in arrays.items():
            np.save(path / f"{name}.npy", t.numpy())
    else:
        raise ValueError(
            f"Expected argument `output_path` to end in '.pt' or '.npz' or to be a folder (no suffix), but got {str(path)!r}."
        )
    return path


def _split_prediction(prediction: Any, batch: Any) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(embeddings, labels, indices) from a ``predict_step`` output (tensor or dict) and its batch."""
    from lit_metric.module import unpack_batch

    labels = indices = None
    if isinstance(prediction, dict):
        emb = prediction["embeddings"]
        labels, indices = prediction.get("labels"), prediction.get("indices")
    elif isinstance(prediction, Tensor):
        emb = prediction
    else:
        raise TypeError(
            f"Expected predict_step to return a (B, D) tensor or a dict with 'embeddings', but got {type(prediction).__name__}."
        )
    if labels is None and indices is None:
        try:
            _, labels, indices = unpack_batch(batch)
        except (ValueError, KeyError):
            labels = indices = None
    if isinstance(labels, Tensor) and (labels.ndim != 1 or labels.is_floating_point()):
        labels = None  # only integer class ids are written
    return emb, labels, indices if isinstance(indices, Tensor) else None


class EmbeddingWriter(BasePredictionWriter):
    """Collect the embeddings ``trainer.predict`` produces, with their labels and ids, and write one file.

    Works with the stock :class:`~lit_metric.MetricLearningModule` (``predict_step`` returns the ``(B, D)``
    embeddings; labels and dataset indices are read from the ``(x, y, index)`` batch) and with a ``predict_step``
    returning ``{"embeddings", "labels", "indices"}``.  ``lit-metric predict --config … --ckpt_path …`` adds one
    automatically (writing ``<default_root_dir>/embeddings.pt``) unless the config has a prediction writer.

    **Format.**  Rows are sorted by id; under DDP the ranks' rows are gathered and the duplicates a padded
    ``DistributedSampler`` adds are dropped (by id), and rank 0 writes.

    * ``*.pt``: ``torch.save({"embeddings": float (N, D), "ids": int64 (N,), "labels": int64 (N,)})``;
      load with ``torch.load(path, weights_only=True)``.
    * ``*.npz``: ``numpy.savez`` with the same keys.
    * a path without suffix: a folder with ``embeddings.npy``, ``ids.npy``, ``labels.npy``.

    ``ids`` are the dataset indices when batches carry them, else the running position in the prediction order;
    ``labels`` is present only when the batches have integer labels.  With several predict dataloaders one file
    per dataloader is written, suffixed ``_<dataloader_idx>``.  :meth:`lit_metric.EmbeddingIndex.from_predictions`
    reads any of the three.

    Args:
        output_path: file (``.pt``/``.npz``) or folder to write.
        dtype: embedding dtype written (``"float32"`` or ``"float16"``).

    Raises:
        ValueError: on an unsupported suffix or dtype.
    """

    def __init__(self, output_path: str = "embeddings.pt", dtype: Literal["float32", "float16"] = "float32") -> None:
        super().__init__(write_interval="batch")
        if Path(output_path).suffix not in ("", ".pt", ".npz"):
            raise ValueError(
                f"Expected argument `output_path` to end in '.pt' or '.npz' or to be a folder (no suffix), but got {output_path!r}."
            )
        if dtype not in ("float32", "float16"):
            raise ValueError(f"Expected argument `dtype` to be one of ['float32', 'float16'], but got {dtype!r}.")
        self.output_path = output_path
        self.dtype = dtype
        self.written: list[Path] = []
        self._parts: dict[int, dict[str, list[Tensor]]] = {}
        self._seen: dict[int, int] = {}

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._parts, self._seen, self.written = {}, {}, []

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        emb, labels, indices = _split_prediction(prediction, batch)
        n = emb.shape[0]
        if indices is None:
            start = self._seen.get(dataloader_idx, 0)
            # running position; under DDP offset by rank so that ids stay unique (no dedup possible without ids)
            indices = torch.arange(start, start + n) * distributed.world_size() + distributed.rank()
            self._seen[dataloader_idx] = start + n
        part = self._parts.setdefault(dataloader_idx, {"embeddings": [], "ids": [], "labels": []})
        part["embeddings"].append(emb.detach().to("cpu", getattr(torch, self.dtype)))
        part["ids"].append(indices.detach().cpu().long().reshape(-1))
        if labels is not None:
            part["labels"].append(labels.detach().cpu().long())

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        many = len(self._parts) > 1
        for dl_idx, part in sorted(self._parts.items()):
            data = {"embeddings": torch.cat(part["embeddings"]), "ids": torch.cat(part["ids"])}
            if part["labels"] and len(part["labels"]) == len(part["embeddings"]):
                data["labels"] = torch.cat(part["labels"])
            data = self._gather(data)
            if trainer.is_global_zero:
                path = Path(self.output_path)
                if many:
                    path = path.with_name(f"{path.stem}_{dl_idx}{path.suffix}")
                self.written.append(write_embeddings(path, data))
        self._parts = {}

    @staticmethod
    def _gather(data: dict[str, Tensor]) -> dict[str, Tensor]:
        """All ranks' rows (DDP), one row per id, sorted by id."""
        if distributed.is_distributed():
            import torch.distributed as dist

            gathered: list[Any] = [None] * distributed.world_size()
            dist.all_gather_object(gathered, data)
            data = {name: torch.cat([g[name] for g in gathered]) for name in data}
        ids = data["ids"]
        uniq, inverse = torch.unique(ids, return_inverse=True)
        first = torch.full((uniq.numel(),), ids.numel(), dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(ids.numel()), reduce="amin")  # sorted by id
        return {name: t[first] for name, t in data.items()}
