"""EmbeddingIndex: exact nearest-neighbour search over stored embeddings, save/load, threshold verification."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from lit_metric._validation import check_choice, check_embeddings, check_int, check_labels
from lit_metric.distances import BaseDistance, CosineSimilarity
from lit_metric.functional.knn import faiss_metric, knn_chunks
from lit_metric.metrics.verification_metrics import verify_pairs

__all__ = ["EmbeddingIndex"]

FORMAT = "lit_metric.EmbeddingIndex"
FORMAT_VERSION = 1


def _distance_spec(distance: BaseDistance) -> dict[str, Any]:
    """``{"class_path": ..., "init_args": {...}}`` from the constructor signature (plain values only)."""
    cls = type(distance)
    init_args: dict[str, Any] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        value = getattr(distance, name, param.default)
        if not isinstance(value, bool | int | float | str | type(None)):
            raise ValueError(
                f"Cannot save distance {cls.__name__}: its argument `{name}` is a {type(value).__name__}; only "
                "bool/int/float/str/None arguments stored as attributes of the same name can be saved."
            )
        init_args[name] = value
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def _distance_from_spec(spec: dict[str, Any]) -> BaseDistance:
    module_name, _, cls_name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, BaseDistance)):
        raise ValueError(f"Expected a BaseDistance class in the saved index, but got {spec['class_path']!r}.")
    return cls(**spec["init_args"])


class EmbeddingIndex:
    """A searchable set of embeddings with ids (and optional labels): the deployment side of metric learning.

    ``search(queries, k)`` returns the ``k`` closest stored items by exact search — torch in chunks of
    ``chunk_size`` queries (peak memory ``chunk_size × N`` scores, on the embeddings' device) or a flat faiss
    index (``backend="faiss"``, CPU, float32; built lazily, not saved).  Results are ordered closest first, ties by
    insertion order.  ``verify(a, b)`` answers "same identity?" with the threshold chosen by
    :class:`~lit_metric.metrics.VerificationMetrics` (``d <= threshold`` for a distance, ``s >= threshold`` for a
    similarity).

    **File format** (``save``/``load``): one ``torch.save`` file holding only plain types, readable with
    ``torch.load(path, weights_only=True)``::

        {"format": "lit_metric.EmbeddingIndex", "version": 1,
         "embeddings": float tensor (N, D), "ids": int64 tensor (N,), "labels": int64 tensor (N,) or None,
         "distance": {"class_path": "lit_metric.distances.CosineSimilarity", "init_args": {}},
         "threshold": float or None, "backend": "torch" | "faiss"}

    Args:
        embeddings: ``(N, D)`` gallery embeddings.
        ids: ``(N,)`` integer ids returned by ``search`` (default ``0..N-1``), e.g. dataset indices.
        labels: ``(N,)`` optional integer labels (kept and saved; ``labels_of`` maps ids to them).
        distance: the measure (default cosine similarity).
        backend: ``"torch"`` or ``"faiss"``.
        threshold: verification threshold in the measure's units.
        chunk_size: queries per chunk.

    Raises:
        ValueError / TypeError: on malformed embeddings, ids, labels or arguments.

    Example:
        >>> import torch
        >>> index = EmbeddingIndex(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]), ids=torch.tensor([10, 20, 30]))
        >>> scores, ids = index.search(torch.tensor([[0.9, 0.1]]), k=2)
        >>> ids
        tensor([[10, 30]])
        >>> index.threshold = 0.9  # e.g. VerificationMetrics(...).compute()["threshold"]
        >>> index.verify(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.95, 0.05]]))
        tensor([True])
    """

    def __init__(
        self,
        embeddings: Tensor,
        ids: Tensor | Sequence[int] | None = None,
        labels: Tensor | None = None,
        distance: BaseDistance | None = None,
        backend: Literal["torch", "faiss"] = "torch",
        threshold: float | None = None,
        chunk_size: int = 1024,
    ) -> None:
        self.distance = distance if distance is not None else CosineSimilarity()
        if not isinstance(self.distance, BaseDistance):
            raise TypeError(
                f"Expected argument `distance` to be a lit_metric distance, but got {type(self.distance).__name__}."
            )
        self.backend: Literal["torch", "faiss"] = check_choice(backend, "backend", ("torch", "faiss"))  # type: ignore[assignment]
        if self.backend == "faiss":
            faiss_metric(self.distance)
        self.chunk_size = check_int(chunk_size, "chunk_size", 1)
        self.threshold = None if threshold is None else float(threshold)
        check_embeddings(embeddings)
        self.embeddings = embeddings.detach()
        self.ids = self._check_ids(ids, embeddings.shape[0], 0)
        self.labels = None if labels is None else check_labels(labels, embeddings.shape[0]).detach().long()
        self._faiss: Any = None

    @staticmethod
    def _check_ids(ids: Tensor | Sequence[int] | None, n: int, start: int) -> Tensor:
        if ids is None:
            return torch.arange(start, start + n, dtype=torch.long)
        ids_t = ids if isinstance(ids, Tensor) else torch.as_tensor(ids)
        return check_labels(ids_t, n, "ids").detach().long().cpu()

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def __repr__(self) -> str:
        return (
            f"EmbeddingIndex(n={len(self)}, dim={self.embeddings.shape[1]}, distance={type(self.distance).__name__}, "
            f"backend={self.backend!r}, threshold={self.threshold})"
        )

    def add(self, embeddings: Tensor, ids: Tensor | Sequence[int] | None = None, labels: Tensor | None = None) -> None:
        """Append ``(B, D)`` embeddings (ids default to continuing ``0..N-1``; labels needed iff the index has them)."""
        check_embeddings(embeddings)
        if embeddings.shape[1] != self.embeddings.shape[1]:
            raise ValueError(
                f"Expected argument `embeddings` to have dimension {self.embeddings.shape[1]}, but got {embeddings.shape[1]}."
            )
        start = int(self.ids.max()) + 1 if self.ids.numel() else 0
        new_ids = self._check_ids(ids, embeddings.shape[0], start)
        if (labels is None) != (self.labels is None):
            raise ValueError("Expected `labels` exactly when the index was built with labels.")
        if labels is not None and self.labels is not None:
            self.labels = torch.cat([self.labels, check_labels(labels, embeddings.shape[0]).detach().long().to(self.labels.device)])
        self.embeddings = torch.cat([self.embeddings, embeddings.detach().to(self.embeddings)])
        self.ids = torch.cat([self.ids, new_ids])
        self._faiss = None

    @torch.no_grad()
    def search(self, queries: Tensor, k: int = 1) -> tuple[Tensor, Tensor]:
        """The ``k`` nearest stored items of each query.

        Args:
            queries: ``(Q, D)`` or ``(D,)``.
            k: neighbours (``<= len(index)``).

        Returns:
            ``(scores, ids)``, each ``(Q, k)`` (``(k,)`` for a 1-D query): the measure's values, closest first, and
            the stored ids.
        """
        single = queries.ndim == 1
        q = queries.unsqueeze(0) if single else queries
        check_embeddings(q, "queries")
        check_int(k, "k", 1)
        if q.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"Expected queries of dimension {self.embeddings.shape[1]}, but got {q.shape[1]}.")
        q = q.to(device=self.embeddings.device, dtype=self.embeddings.dtype)
        scores, idx = [], []
        for _, s, i in knn_chunks(q, self.embeddings, k, self.distance, self.chunk_size, backend=self.backend):
            scores.append(s)
            idx.append(i)
        score = torch.cat(scores) if scores else q.new_zeros((0, k))
        ids = self.ids[torch.cat(idx).cpu()] if idx else torch.zeros((0, k), dtype=torch.long)
        return (score[0], ids[0]) if single else (score, ids)

    def labels_of(self, ids: Tensor) -> Tensor:
        """Labels of the given ids (any shape), e.g. of ``search``'s result."""
        if self.labels is None:
            raise ValueError("Expected an index built with `labels`, but it has none.")
        order = torch.argsort(self.ids)
        pos = torch.searchsorted(self.ids[order], ids.cpu().reshape(-1)).clamp_max(len(self) - 1)
        if not bool((self.ids[order][pos] == ids.cpu().reshape(-1)).all()):
            raise ValueError("Expected ids stored in the index, but some are unknown.")
        return self.labels.cpu()[order[pos]].view(ids.shape)

    def verify(self, a: Tensor, b: Tensor, threshold: float | None = None) -> Tensor:
        """``(B, D), (B, D) -> (B,)`` bool: is each pair the same identity at ``threshold`` (default the index's)?

        Raises:
            ValueError: when neither the call nor the index has a threshold.
        """
        limit = self.threshold if threshold is None else float(threshold)
        if limit is None:
            raise ValueError(
                "Expected a verification threshold, but the index has none: pass `threshold=` or set "
                "`index.threshold = VerificationMetrics(...).compute()['threshold']`."
            )
        a2, b2 = (a.unsqueeze(0), b.unsqueeze(0)) if a.ndim == 1 else (a, b)
        check_embeddings(a2, "a")
        check_embeddings(b2, "b")
        if a2.shape != b2.shape:
            raise ValueError(f"Expected `a` and `b` of the same shape, but got {tuple(a2.shape)} and {tuple(b2.shape)}.")
        same = verify_pairs(a2, b2, limit, self.distance)
        return same[0] if a.ndim == 1 else same

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (one ``torch.save`` file; format in the class docstring)."""
        torch.save(
            {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "embeddings": self.embeddings.cpu(),
                "ids": self.ids.cpu(),
                "labels": None if self.labels is None else self.labels.cpu(),
                "distance": _distance_spec(self.distance),
                "threshold": self.threshold,
                "backend": self.backend,
            },
            Path(path),
        )

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu", **overrides: Any) -> EmbeddingIndex:
        """Read an index written by :meth:`save` (``weights_only`` loading: no code runs); ``overrides`` replace
        constructor arguments (e.g. ``backend="faiss"``).

        Raises:
            ValueError: if the file is not a saved EmbeddingIndex.
        """
        state = torch.load(Path(path), map_location=map_location, weights_only=True)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"Expected a file written by EmbeddingIndex.save, but {path} is not one.")
        if int(state["version"]) > FORMAT_VERSION:
            raise ValueError(f"Expected index format version <= {FORMAT_VERSION}, but got {state['version']}.")
        kwargs: dict[str, Any] = dict(
            embeddings=state["embeddings"],
            ids=state["ids"],
            labels=state["labels"],
            distance=_distance_from_spec(state["distance"]),
            backend=state["backend"],
            threshold=state["threshold"],
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_predictions(cls, path: str | Path, **kwargs: Any) -> EmbeddingIndex:
        """Build an index from the file :class:`~lit_metric.callbacks.EmbeddingWriter` wrote (``lit-metric predict``):
        a ``.pt`` or ``.npz`` file, or a folder of ``.npy`` files, with ``embeddings``, ``ids`` and optional ``labels``."""
        path = Path(path)
        if path.is_dir():
            arrays = {p.stem: np.load(p) for p in path.glob("*.npy")}
            data = {name: torch.from_numpy(a) for name, a in arrays.items()}
        elif path.suffix == ".npz":
            with np.load(path) as npz:
                data = {name: torch.from_numpy(npz[name]) for name in npz.files}
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
        if "embeddings" not in data:
            raise ValueError(f"Expected an `embeddings` entry in {path}, but got {sorted(data)}.")
        return cls(data["embeddings"], ids=data.get("ids"), labels=data.get("labels"), **kwargs)
